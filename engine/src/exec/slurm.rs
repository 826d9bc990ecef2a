//! Slurm back-end (see issue: stages as Slurm jobs). Placeholder module until it lands.
