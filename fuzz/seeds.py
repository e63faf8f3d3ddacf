#!/usr/bin/env python3
"""Writes seed corpora for the fuzz targets into fuzz/corpus/<target>/ (git-ignored).

Every seed is a valid input in the layout its target expects (see the doc comment of each target):
small IDX, CIFAR, .npy and .npz files built here, and checkpoint sidecars taken from a real run.

    python3 fuzz/seeds.py [SIDECAR.json ...]

With no sidecar paths it runs `target/release/warpnet train --preset demo --iters 3 --batch 16` into a
temporary folder and takes the sidecar that run writes.
"""
import glob
import gzip
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import zipfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")
IMAGE_BYTES = 3 * 32 * 32
rng = random.Random(0)


def put(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def noise(n):
    return bytes(rng.randrange(256) for _ in range(n))


def two(first, second):
    """The layout of warpnet_fuzz::split_two: u16 LE length of the first part, then both parts."""
    assert len(first) < 1 << 16
    return struct.pack("<H", len(first)) + first + second


def gz(data):
    return gzip.compress(data, mtime=0)


def idx_seeds():
    for count in (1, 2):
        images = struct.pack(">IIII", 0x803, count, 28, 28) + noise(count * 28 * 28)
        labels = struct.pack(">II", 0x801, count) + bytes(rng.randrange(10) for _ in range(count))
        put("idx", f"plain-{count}", two(images, labels))
        put("idx", f"gzip-{count}", two(gz(images), gz(labels)))
        put("idx", f"mixed-{count}", two(gz(images), labels))


def cifar_seeds():
    for count in (1, 2):
        c10 = b"".join(bytes([rng.randrange(10)]) + noise(IMAGE_BYTES) for _ in range(count))
        c100 = b"".join(bytes([rng.randrange(20), rng.randrange(100)]) + noise(IMAGE_BYTES) for _ in range(count))
        put("cifar", f"cifar10-{count}", b"\x00" + c10)
        put("cifar", f"cifar100-{count}", b"\x01" + c100)


def npy(descr, shape, data, major=1, quote="'"):
    """A .npy file as numpy writes it: header dict padded with spaces to a multiple of 64 bytes."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    q = quote
    header = f"{{{q}descr{q}: {q}{descr}{q}, {q}fortran_order{q}: False, {q}shape{q}: ({dims}), }}"
    length_format = "<H" if major == 1 else "<I"
    preamble = 8 + struct.calcsize(length_format)
    pad = -(preamble + len(header) + 1) % 64
    header = (header + " " * pad + "\n").encode()
    return b"\x93NUMPY" + bytes([major, 0]) + struct.pack(length_format, len(header)) + header + data


def imagenet_arrays(count, label_descr="<i8"):
    data = npy("|u1", (count, IMAGE_BYTES), noise(count * IMAGE_BYTES))
    values = [rng.randrange(1, 1001) for _ in range(count)]
    formats = {"<i8": "<q", "<i4": "<i", "<u2": "<H", ">i8": ">q"}
    raw = b"".join(struct.pack(formats[label_descr], v) for v in values)
    return data, npy(label_descr, (count,), raw)


def npy_seeds():
    put("npy", "u1-images", npy("|u1", (1, IMAGE_BYTES), noise(IMAGE_BYTES)))
    put("npy", "u1-4d", npy("|u1", (1, 3, 32, 32), noise(IMAGE_BYTES)))
    put("npy", "i8-labels", npy("<i8", (3,), struct.pack("<3q", 1, 500, 1000)))
    put("npy", "i4-column", npy("<i4", (2, 1), struct.pack("<2i", 7, -7)))
    put("npy", "u2-big-endian", npy(">u2", (2, 2), struct.pack(">4H", 1, 2, 65535, 0)))
    put("npy", "f4-scalar", npy("<f4", (), struct.pack("<f", 0.5)))
    put("npy", "f8-empty", npy("<f8", (0, 5), b""))
    put("npy", "b1", npy("|b1", (4,), b"\x00\x01\x01\x00"))
    put("npy", "v2-double-quotes", npy("<i2", (2,), struct.pack("<2h", -1, 1), major=2, quote='"'))
    put("npy", "v3", npy("<u8", (1,), struct.pack("<Q", 1 << 63), major=3))


def zipped(entries, method):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def npz_seeds():
    for count in (1, 2):
        data, labels = imagenet_arrays(count)
        for tag, method in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED)):
            put("npz", f"raw-{tag}-{count}", b"\x00" + zipped([("data.npy", data), ("labels.npy", labels)], method))
        put("npz", f"packed-stored-{count}", b"\x02" + two(data, labels))
        put("npz", f"packed-deflated-{count}", b"\x03" + two(data, labels))
    data, labels = imagenet_arrays(2, "<u2")
    mean = npy("<f8", (IMAGE_BYTES // 64,), noise(8 * IMAGE_BYTES // 64))
    entries = [("data.npy", data), ("labels.npy", labels), ("mean.npy", mean)]
    put("npz", "raw-with-mean", b"\x01" + zipped(entries, zipfile.ZIP_DEFLATED))


def sidecar_paths(given):
    if given:
        return given
    run = tempfile.mkdtemp(prefix="warpnet-fuzz-seed-")
    binary = os.path.join(ROOT, "target", "release", "warpnet")
    command = [binary, "train", "--preset", "demo", "--iters", "3", "--batch", "16", "--quiet", "--out", run]
    subprocess.run(command, check=True, cwd=ROOT)
    return sorted(glob.glob(os.path.join(run, "checkpoints", "step-*.json")))


def sidecar_seeds(paths):
    if not paths:
        sys.exit("no sidecar found")
    with open(paths[-1]) as f:
        text = f.read()
    put("sidecar", "pretty", text.encode())
    sidecar = json.loads(text)
    put("sidecar", "compact", json.dumps(sidecar, separators=(",", ":")).encode())
    # The same sidecar in the other shapes a run can give it.
    mid_epoch = json.loads(text)
    mid_epoch["position"] = {"epoch": 2, "batch": 5, "step": 755}
    mid_epoch["progress"] = {"loss_sum": 11.25, "correct": 40, "seen": 80, "seconds": 3.5}
    put("sidecar", "mid-epoch", json.dumps(mid_epoch, indent=2).encode())
    warp = json.loads(text)
    warp["config"].update(model="warp", k=3, nwarp=2, variant="exact", max_order=2, derivative_bn="frozen")
    warp["config"].update(devices="cpu:2", placement="[F1],[F2,F2'x1]", data="cifar10:/data/cifar-10", iters=None)
    warp["classes"] = 3
    warp["class_names"] = ["a", "b", "c"]
    put("sidecar", "warp-parallel", json.dumps(warp, indent=2).encode())
    cuda = json.loads(text)
    cuda["config"].update(model="warp", k=2, variant="released", devices="cuda:0,cuda:1", threads=4)
    cuda["config"].update(limit_train=100, data="imagenet32:/d", out=None, milestones=[])
    put("sidecar", "cuda", json.dumps(cuda).encode())


if __name__ == "__main__":
    idx_seeds()
    cifar_seeds()
    npy_seeds()
    npz_seeds()
    sidecar_seeds(sidecar_paths(sys.argv[1:]))
    for target in sorted(os.listdir(CORPUS)):
        print(f"{target}: {len(os.listdir(os.path.join(CORPUS, target)))} seeds")
