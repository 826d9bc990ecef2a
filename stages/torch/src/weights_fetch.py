"""`pipeline weights fetch`: a torchvision state dict as a safetensors file, with torch only.

Usage (run by pipeline-torch with the pipeline's Python): weights_fetch.py SOURCE OUT META_JSON
  SOURCE  https://… (downloaded into torch's hub cache; the sha256 prefix in the file name is
          checked, as torchvision does) or a local state dict (.pth, torch.save)
  OUT     the safetensors file to write (names exactly as torchvision writes them)

The file is written through a memory map of a torch tensor, so no numpy or safetensors package
is needed (the pipeline's Python environment has torch and nothing else).
"""

import json
import sys

import torch

DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def load(source):
    if source.startswith("https://"):
        try:
            return torch.hub.load_state_dict_from_url(source, map_location="cpu", check_hash=True, progress=True)
        except (OSError, RuntimeError) as e:  # no network (URLError is an OSError), a wrong hash
            sys.exit(f"cannot download {source}: {getattr(e, 'reason', e)}")
    state = torch.load(source, map_location="cpu", weights_only=True)
    # Training scripts often wrap the state dict.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        sys.exit(f"{source}: not a state dict (a mapping of names to tensors) but {type(state).__name__}")
    return state


def write_safetensors(tensors, out, metadata):
    names = sorted(tensors)
    header, offset = {}, 0
    for name in names:
        t = tensors[name]
        if t.dtype not in DTYPES:
            sys.exit(f"{name}: dtype {t.dtype} has no safetensors name")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    start = 8 + len(text)
    buf = torch.from_file(out, shared=True, size=start + offset, dtype=torch.uint8)
    buf[:8] = torch.frombuffer(bytearray(len(text).to_bytes(8, "little")), dtype=torch.uint8)
    buf[8:start] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    for name in names:
        lo, hi = header[name]["data_offsets"]
        if hi > lo:
            buf[start + lo : start + hi] = tensors[name].reshape(-1).view(torch.uint8)
    del buf


def main():
    source, out, meta = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    state = load(source)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        sys.exit(f"{source}: holds no tensors")
    meta["torch"] = torch.__version__
    write_safetensors(tensors, out, {k: str(v) for k, v in meta.items()})
    print(len(tensors))


if __name__ == "__main__":
    main()
