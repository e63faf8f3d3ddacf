#!/usr/bin/env python3
"""Build the class-balanced Fashion-MNIST subset that is compiled into the warpnet binary.

Selection rule (deterministic): from the training file keep the FIRST 600 images of each of the 10
classes, and from the t10k file the FIRST 100 of each class, in both cases keeping the images in their
original file order. The result is written as gzip-compressed IDX files (level 9, mtime 0, no file name
in the gzip header) so that running the script twice gives identical bytes.

Usage:
    python3 scripts/make_embedded_subset.py [SOURCE_DIR] [OUTPUT_DIR]

SOURCE_DIR defaults to /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist) and
OUTPUT_DIR to assets/fashion-mnist-subset next to this script's parent directory. Standard library only.
"""

import gzip
import io
import os
import struct
import sys

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
CLASSES = 10
SPLITS = (
    # (file prefix, images kept per class)
    ("train", 600),
    ("t10k", 100),
)


def read_gz_or_plain(path):
    """Returns the bytes of `path`, or of `path + '.gz'` decompressed, whichever exists."""
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def parse_images(data, name):
    """Returns (rows, cols, list of image byte strings) of an IDX3 image file."""
    magic, count, rows, cols = struct.unpack_from(">IIII", data, 0)
    if magic != IMAGES_MAGIC:
        sys.exit(f"{name}: wrong magic 0x{magic:08x}")
    size = rows * cols
    if len(data) != 16 + count * size:
        sys.exit(f"{name}: {len(data)} bytes, expected {16 + count * size}")
    return rows, cols, [data[16 + i * size : 16 + (i + 1) * size] for i in range(count)]


def parse_labels(data, name):
    """Returns the list of labels of an IDX1 label file."""
    magic, count = struct.unpack_from(">II", data, 0)
    if magic != LABELS_MAGIC:
        sys.exit(f"{name}: wrong magic 0x{magic:08x}")
    if len(data) != 8 + count:
        sys.exit(f"{name}: {len(data)} bytes, expected {8 + count}")
    return list(data[8:])


def select(labels, per_class):
    """Indices of the first `per_class` images of each class, in file order."""
    taken = [0] * CLASSES
    keep = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            keep.append(i)
    if taken != [per_class] * CLASSES:
        sys.exit(f"not enough images per class: {taken}")
    return keep


def write_gz(path, payload):
    """Writes `payload` gzip-compressed, reproducibly (level 9, mtime 0, empty file name)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as f:
        f.write(payload)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def make_split(source, output, prefix, per_class):
    """Selects and writes one split; returns the number of images written."""
    images_name = f"{prefix}-images-idx3-ubyte"
    labels_name = f"{prefix}-labels-idx1-ubyte"
    rows, cols, images = parse_images(
        read_gz_or_plain(os.path.join(source, images_name)), images_name
    )
    labels = parse_labels(read_gz_or_plain(os.path.join(source, labels_name)), labels_name)
    if len(images) != len(labels):
        sys.exit(f"{prefix}: {len(images)} images but {len(labels)} labels")
    keep = select(labels, per_class)
    image_bytes = struct.pack(">IIII", IMAGES_MAGIC, len(keep), rows, cols)
    image_bytes += b"".join(images[i] for i in keep)
    label_bytes = struct.pack(">II", LABELS_MAGIC, len(keep)) + bytes(labels[i] for i in keep)
    write_gz(os.path.join(output, images_name + ".gz"), image_bytes)
    write_gz(os.path.join(output, labels_name + ".gz"), label_bytes)
    return len(keep)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    output = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "assets", "fashion-mnist-subset")
    os.makedirs(output, exist_ok=True)
    for prefix, per_class in SPLITS:
        count = make_split(source, output, prefix, per_class)
        print(f"{prefix}: {count} images ({per_class} per class) -> {output}")


if __name__ == "__main__":
    main()
