"""Cut the small test samples in `tests/data/` from the full data sets in `../shared/data`.

The cut is deterministic, so running this again reproduces the committed files byte for byte:

- Omniglot: every alphabet, its first `OMNIGLOT_CHARACTERS` characters (sorted folder names), all 20 drawings each;
  the PNG files are copied unchanged, with the data set's LICENSE.
- Debian package descriptions: every row whose source package is one of every `DEBIAN_SOURCE_STEP`-th source name
  in sorted order, so the sample spans the alphabet and keeps each kept source's binaries together.

Usage: `python tests/data/cut_samples.py [--shared ../shared/data] [--out tests/data]`
"""

import argparse
import shutil
from pathlib import Path

OMNIGLOT_CHARACTERS = 8
DEBIAN_SOURCE_STEP = 12

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parents[2] / "shared" / "data"

__all__ = ["cut_omniglot", "cut_debian", "main"]


def cut_omniglot(source: Path, target: Path, n_characters: int = OMNIGLOT_CHARACTERS) -> int:
    """Copy the first `n_characters` characters of every alphabet; returns the number of images copied."""
    if target.exists():
        shutil.rmtree(target)
    copied = 0
    for alphabet in sorted(p for p in (source / "images").iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir())[:n_characters]:
            destination = target / "images" / alphabet.name / character.name
            destination.mkdir(parents=True)
            for image in sorted(character.glob("*.png")):
                shutil.copyfile(image, destination / image.name)
                copied += 1
    shutil.copyfile(source / "LICENSE", target / "LICENSE")
    return copied


def cut_debian(source: Path, target: Path, step: int = DEBIAN_SOURCE_STEP) -> int:
    """Keep the rows of every `step`-th source package (sorted); returns the number of rows written."""
    # Lines are copied as they are (no CSV re-quoting), so every kept row is byte-identical to the full file's.
    lines = (source / "descriptions.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    source_column = lines[0].rstrip("\n").split("\t").index("source")
    sources = [line.split("\t")[source_column] for line in lines[1:]]
    kept_sources = set(sorted(set(sources))[::step])
    kept = [line for line, name in zip(lines[1:], sources) if name in kept_sources]
    target.mkdir(parents=True, exist_ok=True)
    (target / "descriptions.tsv").write_text(lines[0] + "".join(kept), encoding="utf-8")
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the full data sets (../shared/data)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the samples go (tests/data)")
    args = parser.parse_args()
    if not (args.shared / "omniglot" / "images").is_dir():
        raise SystemExit(f"full data sets not found at {args.shared}: pass --shared PATH/TO/shared/data")
    images = cut_omniglot(args.shared / "omniglot", args.out / "omniglot")
    rows = cut_debian(args.shared / "debian-packages", args.out / "debian-packages")
    print(f"omniglot: {images} images -> {args.out / 'omniglot'}")
    print(f"debian-packages: {rows} rows -> {args.out / 'debian-packages' / 'descriptions.tsv'}")


if __name__ == "__main__":
    main()
