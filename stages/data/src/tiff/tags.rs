//! TIFF tag numbers and field types this reader uses (TIFF 6.0, BigTIFF, Adobe/Aldus notes).

pub(crate) const NEW_SUBFILE_TYPE: u16 = 254;
pub(crate) const IMAGE_WIDTH: u16 = 256;
pub(crate) const IMAGE_LENGTH: u16 = 257;
pub(crate) const BITS_PER_SAMPLE: u16 = 258;
pub(crate) const COMPRESSION: u16 = 259;
pub(crate) const PHOTOMETRIC: u16 = 262;
pub(crate) const IMAGE_DESCRIPTION: u16 = 270;
pub(crate) const STRIP_OFFSETS: u16 = 273;
pub(crate) const SAMPLES_PER_PIXEL: u16 = 277;
pub(crate) const ROWS_PER_STRIP: u16 = 278;
pub(crate) const STRIP_BYTE_COUNTS: u16 = 279;
pub(crate) const X_RESOLUTION: u16 = 282;
pub(crate) const Y_RESOLUTION: u16 = 283;
pub(crate) const PLANAR_CONFIGURATION: u16 = 284;
pub(crate) const RESOLUTION_UNIT: u16 = 296;
pub(crate) const PREDICTOR: u16 = 317;
pub(crate) const TILE_WIDTH: u16 = 322;
pub(crate) const TILE_LENGTH: u16 = 323;
pub(crate) const TILE_OFFSETS: u16 = 324;
pub(crate) const TILE_BYTE_COUNTS: u16 = 325;
pub(crate) const SUB_IFDS: u16 = 330;
pub(crate) const SAMPLE_FORMAT: u16 = 339;
pub(crate) const JPEG_TABLES: u16 = 347;

/// Name of a tag for error messages.
pub(crate) fn tag_name(tag: u16) -> &'static str {
    match tag {
        NEW_SUBFILE_TYPE => "NewSubfileType",
        IMAGE_WIDTH => "ImageWidth",
        IMAGE_LENGTH => "ImageLength",
        BITS_PER_SAMPLE => "BitsPerSample",
        COMPRESSION => "Compression",
        PHOTOMETRIC => "PhotometricInterpretation",
        IMAGE_DESCRIPTION => "ImageDescription",
        STRIP_OFFSETS => "StripOffsets",
        SAMPLES_PER_PIXEL => "SamplesPerPixel",
        ROWS_PER_STRIP => "RowsPerStrip",
        STRIP_BYTE_COUNTS => "StripByteCounts",
        X_RESOLUTION => "XResolution",
        Y_RESOLUTION => "YResolution",
        PLANAR_CONFIGURATION => "PlanarConfiguration",
        RESOLUTION_UNIT => "ResolutionUnit",
        PREDICTOR => "Predictor",
        TILE_WIDTH => "TileWidth",
        TILE_LENGTH => "TileLength",
        TILE_OFFSETS => "TileOffsets",
        TILE_BYTE_COUNTS => "TileByteCounts",
        SUB_IFDS => "SubIFDs",
        SAMPLE_FORMAT => "SampleFormat",
        JPEG_TABLES => "JPEGTables",
        _ => "tag",
    }
}

/// A TIFF field type (the `type` of an IFD entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Byte,
    Ascii,
    Short,
    Long,
    Rational,
    SByte,
    Undefined,
    SShort,
    SLong,
    SRational,
    Float,
    Double,
    Ifd,
    Long8,
    SLong8,
    Ifd8,
}

impl FieldType {
    /// `None` for types this reader does not know (TIFF readers skip such entries).
    pub(crate) fn from_code(code: u16) -> Option<FieldType> {
        Some(match code {
            1 => FieldType::Byte,
            2 => FieldType::Ascii,
            3 => FieldType::Short,
            4 => FieldType::Long,
            5 => FieldType::Rational,
            6 => FieldType::SByte,
            7 => FieldType::Undefined,
            8 => FieldType::SShort,
            9 => FieldType::SLong,
            10 => FieldType::SRational,
            11 => FieldType::Float,
            12 => FieldType::Double,
            13 => FieldType::Ifd,
            16 => FieldType::Long8,
            17 => FieldType::SLong8,
            18 => FieldType::Ifd8,
            _ => return None,
        })
    }

    /// Bytes per value.
    pub(crate) fn size(self) -> u64 {
        match self {
            FieldType::Byte | FieldType::Ascii | FieldType::SByte | FieldType::Undefined => 1,
            FieldType::Short | FieldType::SShort => 2,
            FieldType::Long | FieldType::SLong | FieldType::Float | FieldType::Ifd => 4,
            FieldType::Rational
            | FieldType::SRational
            | FieldType::Double
            | FieldType::Long8
            | FieldType::SLong8
            | FieldType::Ifd8 => 8,
        }
    }
}
