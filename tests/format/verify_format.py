#!/usr/bin/python3
"""Independent reader of the scratchcrypt on-disk format, version 2 (docs/FORMAT.md).

Written from the format document, not from the C++ engine: AES-XTS (with
ciphertext stealing) is implemented here on top of single-block AES-ECB,
names use AES-SIV from python3-cryptography, the KDF uses hashlib.blake2b.
Whoever holds a volume key can decrypt a backing file or name with it.

Library use:
    derive(key, purpose, n) -> bytes
    decrypt_file(key, file_id, data) -> plaintext
    encrypt_file(key, file_id, plaintext) -> data
    decrypt_name(key, dir_id, backing_name_or_companion_text) -> str (bytes on non-UTF-8)
    encrypt_name(key, dir_id, name) -> (backing_name, companion_text or None)
    decrypt_symlink(key, text), read_symlink(key, backing_root, link_path),
    decrypt_device(key, stored) -> ("c" or "b", major, minor),
    decrypt_xattr_name(key, stored),
    decrypt_xattr_value(key, object_id, name, stored)

Command line (the key file holds the 64-byte key raw, or as 128 hex digits):
    verify_format.py --key-file K decrypt-file BACKING_FILE [-o OUT]
    verify_format.py --key-file K decrypt-name DIR_ID_HEX NAME
    verify_format.py --key-file K ls BACKING_DIR
    verify_format.py --key-file K check-volume BACKING_ROOT
    verify_format.py --key-file K decrypt-image BLOCK_BACKING/image -o OUT
    verify_format.py selftest
Needs Debian's python3-cryptography (>= 38, for AESSIV).
"""

import argparse
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "worked_example.json")
FORMAT_MD = os.path.join(HERE, "..", "..", "docs", "FORMAT.md")

DATA_UNIT = 4096
KDF_PREFIX = b"scratchcrypt/v1/"
XATTR_ID = "user.scratchcrypt.id"
XATTR_PREFIX = "user.scratchcrypt.x."
HEADER = ".scratchcrypt-volume"
LONG_TARGET = ".T"      # a long symlink target's companion, in the volume root
XATTR_DEVICE = "trusted.scratchcrypt.dev"   # on a FIFO that is a device node
MAX_NAME = 255
MASK128 = (1 << 128) - 1


# --- key derivation ---------------------------------------------------------

def derive(key, purpose, n):
    """subkey(purpose, n) = BLAKE2b(key=volume key, digest_size=n,
    message="scratchcrypt/v1/" + purpose)."""
    if len(key) != 64:
        raise ValueError("a volume key is 64 bytes")
    return hashlib.blake2b(KDF_PREFIX + purpose.encode(), digest_size=n, key=key).digest()


# --- AES-XTS from AES-ECB (IEEE 1619-2007, sections 5.3 and 5.4) -------------

def _ecb(key, data, encrypt=True):
    c = Cipher(algorithms.AES(key), modes.ECB())
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def _xor(a, b):
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _tweak_blocks(key2, tweak, count):
    """T_0 = AES-enc(key2, tweak); T_j+1 = T_j * alpha in GF(2^128), with the
    IEEE 1619 little-endian byte order."""
    t = int.from_bytes(_ecb(key2, tweak), "little")
    out = []
    for _ in range(count):
        out.append(t.to_bytes(16, "little"))
        t = ((t << 1) & MASK128) ^ (0x87 if t >> 127 else 0)
    return out


def _xex(key1, blocks, tweaks, encrypt):
    if not blocks:
        return b""
    tw = b"".join(tweaks)
    return _xor(_ecb(key1, _xor(blocks, tw), encrypt), tw)


def xts(key64, tweak, data, encrypt):
    """XTS-AES-256 of one data unit (>= 16 bytes), with ciphertext stealing."""
    if len(data) < 16:
        raise ValueError("XTS needs at least one block")
    key1, key2 = key64[:32], key64[32:]
    m, b = divmod(len(data), 16)
    tweaks = _tweak_blocks(key2, tweak, m + 1)
    if b == 0:
        return _xex(key1, data, tweaks[:m], encrypt)
    head = _xex(key1, data[:16 * (m - 1)], tweaks[:m - 1], encrypt)
    last_full, partial = data[16 * (m - 1):16 * m], data[16 * m:]
    if encrypt:   # 5.3.2: CC = enc(P_m-1, T_m-1); C_m = CC[:b]; C_m-1 = enc(P_m || CC[b:], T_m)
        cc = _xex(key1, last_full, [tweaks[m - 1]], True)
        return head + _xex(key1, partial + cc[b:], [tweaks[m]], True) + cc[:b]
    # 5.4.2: PP = dec(C_m-1, T_m); P_m = PP[:b]; P_m-1 = dec(C_m || PP[b:], T_m-1)
    pp = _xex(key1, last_full, [tweaks[m]], False)
    return head + _xex(key1, partial + pp[b:], [tweaks[m - 1]], False) + pp[:b]


# --- file contents ----------------------------------------------------------

def unit_tweak(file_id, unit):
    """tweak = file id (16 bytes) XOR (LE64(unit index) || 8 zero bytes)."""
    if len(file_id) != 16:
        raise ValueError("a file id is 16 bytes")
    return _xor(file_id, unit.to_bytes(8, "little") + bytes(8))


def _crypt_file(key, file_id, data, encrypt):
    xts_key = derive(key, "contents", 64)
    tail_key = derive(key, "tail", 32)
    out = bytearray()
    for unit, off in enumerate(range(0, len(data), DATA_UNIT)):
        chunk = data[off:off + DATA_UNIT]
        tweak = unit_tweak(file_id, unit)
        if len(chunk) < 16:        # short tail: XOR with AES-256-ECB(tail key, tweak)
            out += _xor(chunk, _ecb(tail_key, tweak)[:len(chunk)])
        elif not encrypt and chunk.count(0) == len(chunk):
            out += chunk           # a hole: stored zeros read as zeros
        else:
            out += xts(xts_key, tweak, chunk, encrypt)
    return bytes(out)


def decrypt_file(key, file_id, data):
    return _crypt_file(key, file_id, data, False)


def encrypt_file(key, file_id, plaintext):
    return _crypt_file(key, file_id, plaintext, True)


# --- names, symlinks, xattrs (AES-256-SIV, RFC 5297) ------------------------

# --- block layout (section 10) -----------------------------------------------

SECTOR = 4096
BLOCK_TWEAK_ID = bytes(16)  # tweak = LE64(sector) || 8 zero bytes


def decrypt_sector(key, sector, data):
    """One stored 4096-byte sector of a block volume's image: all zeros is a
    hole; otherwise AES-256-XTS, contents subkey, tweak LE64(sector) || 0^8."""
    if data == bytes(len(data)):
        return data
    return xts(derive(key, "contents", 64), unit_tweak(BLOCK_TWEAK_ID, sector), data, False)


def decrypt_image(key, src, dst):
    """Decrypts the image file `src` into `dst` (sparse where `src` has holes),
    visiting only the stored data regions (SEEK_DATA/SEEK_HOLE)."""
    size = os.fstat(src.fileno()).st_size
    dst.truncate(size)
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src.fileno(), pos, os.SEEK_DATA)
        except OSError:
            break  # only holes from here on
        end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
        start -= start % SECTOR
        for sector in range(start // SECTOR, (end + SECTOR - 1) // SECTOR):
            data = os.pread(src.fileno(), SECTOR, sector * SECTOR)
            if data != bytes(len(data)):
                os.pwrite(dst.fileno(), decrypt_sector(key, sector, data), sector * SECTOR)
        pos = max(end, pos + SECTOR)


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text):
    if "=" in text or any(c not in
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          for c in text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _siv(key):
    return AESSIV(derive(key, "names", 64))


def encrypt_name(key, dir_id, name):
    """(backing name, companion text or None)."""
    raw = name.encode() if isinstance(name, str) else name
    text = b64e(_siv(key).encrypt(raw, [b"name", dir_id]))
    if len(text) <= MAX_NAME:
        return text, None
    return ".L" + b64e(hashlib.blake2b(text.encode(), digest_size=32).digest()), text


def decrypt_name(key, dir_id, text):
    """`text` is a short backing name, or the content of a long name's .N
    companion file. Raises on a name that does not authenticate."""
    raw = _siv(key).decrypt(b64d(text), [b"name", dir_id])
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def decrypt_symlink(key, text):
    """`text` is a short backing symlink's target, or a long one's companion."""
    raw = b64d(text)
    nonce = raw[:16]
    return _siv(key).decrypt(raw[16:], [b"symlink", nonce]).decode(errors="surrogateescape")


def long_target_name(text):
    """The long form's backing target and companion name: ".T" + base64url(BLAKE2b-256(text))."""
    return LONG_TARGET + b64e(hashlib.blake2b(text.encode(), digest_size=32).digest())


def read_symlink(key, backing_root, link_path):
    """The plaintext target of the backing symlink `link_path` of the volume
    in `backing_root`, short or long form (section 6)."""
    stored = os.readlink(link_path)
    if stored.startswith(LONG_TARGET) and len(stored) == 45:
        with open(os.path.join(backing_root, stored)) as f:
            text = f.read()
        if long_target_name(text) != stored:
            raise ValueError("the companion " + stored + " does not hold its text")
        return decrypt_symlink(key, text)
    return decrypt_symlink(key, stored)


def decrypt_device(key, stored):
    """The device node a FIFO's trusted.scratchcrypt.dev holds:
    (type "c" or "b", major, minor)."""
    nonce = stored[:16]
    record = _siv(key).decrypt(stored[16:], [b"device", nonce])
    if len(record) != 9 or record[:1] not in (b"c", b"b"):
        raise ValueError("not a device record")
    return (record[:1].decode(), int.from_bytes(record[1:5], "little"),
            int.from_bytes(record[5:9], "little"))


def decrypt_xattr_name(key, stored):
    if not stored.startswith(XATTR_PREFIX):
        raise ValueError("not a scratchcrypt xattr")
    return _siv(key).decrypt(b64d(stored[len(XATTR_PREFIX):]), [b"xattr-name"]).decode()


def decrypt_xattr_value(key, object_id, name, stored):
    plain = _siv(key).decrypt(stored, [b"xattr-value", object_id, name.encode()])
    if plain[:1] != b"\x01":
        raise ValueError("unknown xattr value format")
    return plain[1:]


# --- self test --------------------------------------------------------------

# IEEE Std 1619-2007 Annex B, vector 10 (XTS-AES-256, 512-byte data unit,
# data unit sequence number 0xff); first and last 32 bytes of the ciphertext.
_V10_KEY = ("2718281828459045235360287471352662497757247093699959574966967627"
            "3141592653589793238462643383279502884197169399375105820974944592")
_V10_HEAD = "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b"
_V10_TAIL = "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151"


def selftest():
    failures = []

    def check(what, ok):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    # The XTS here against the standard and against OpenSSL's XTS.
    key = bytes.fromhex(_V10_KEY)
    pt = bytes(range(256)) * 2
    ct = xts(key, (0xff).to_bytes(16, "little"), pt, True)
    check("IEEE 1619 vector 10 (XTS-AES-256) with this XTS",
          ct[:32].hex() == _V10_HEAD and ct[-32:].hex() == _V10_TAIL)
    check("IEEE 1619 vector 10 decrypts", xts(key, (0xff).to_bytes(16, "little"), ct, False) == pt)
    ok = True
    for n in list(range(16, 80)) + [511, 4095, 4096]:
        data = bytes((7 * i + n) & 0xff for i in range(n))
        tweak = bytes(range(16))
        enc = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor()
        ref = enc.update(data) + enc.finalize()
        ok &= xts(key, tweak, data, True) == ref and xts(key, tweak, ref, False) == data
    check("ciphertext stealing matches OpenSSL's XTS for lengths 16..79, 511, 4095, 4096", ok)

    ex = json.load(open(EXAMPLE))
    vk = bytes.fromhex(ex["volume_key"])
    for purpose, hexval in ex["subkeys"].items():
        check(f"subkey {purpose}", derive(vk, purpose, len(hexval) // 2).hex() == hexval)
    fid = bytes.fromhex(ex["file_id"])
    for label in ("file_20", "file_3"):
        plain = ex[label]["plaintext_ascii"].encode()
        stored = bytes.fromhex(ex[label]["ciphertext"])
        check(f"{label}: decrypts", decrypt_file(vk, fid, stored) == plain)
        check(f"{label}: encrypts", encrypt_file(vk, fid, plain) == stored)
    big = b"A" * 4096 + b"xyz"
    stored = encrypt_file(vk, fid, big)
    check("file_4099: unit 0 and the 3-byte tail of unit 1",
          stored[:32].hex() == ex["file_4099"]["unit0_first_32"]
          and stored[4096:].hex() == ex["file_4099"]["unit1_tail"]
          and decrypt_file(vk, fid, stored) == big)
    holed = bytes(4096) + stored[4096:]
    check("an all-zero unit is a hole", decrypt_file(vk, fid, holed) == bytes(4096) + b"xyz")

    did = bytes.fromhex(ex["dir_id"])
    n = ex["name"]
    check("name: encrypts", encrypt_name(vk, did, n["plaintext"]) == (n["backing"], None))
    check("name: decrypts", decrypt_name(vk, did, n["backing"]) == n["plaintext"])
    try:
        decrypt_name(vk, bytes(16), n["backing"])
        check("name: refused in another directory", False)
    except Exception:
        check("name: refused in another directory", True)
    ln = ex["long_name"]
    check("long name: backing and companion",
          encrypt_name(vk, did, "L" * 200) == (ln["backing"], ln["companion_text"])
          and ln["companion"] == ".N" + ln["backing"][2:])
    check("long name: decrypts from the companion text",
          decrypt_name(vk, did, ln["companion_text"]) == "L" * 200)
    check("symlink: decrypts", decrypt_symlink(vk, ex["symlink"]["stored"]) == ex["symlink"]["target"])
    x = ex["xattr"]
    check("xattr name", decrypt_xattr_name(vk, x["stored_name"]) == x["name"]
          and XATTR_PREFIX + b64e(_siv(vk).encrypt(x["name"].encode(), [b"xattr-name"]))
          == x["stored_name"])
    check("xattr value", decrypt_xattr_value(vk, bytes.fromhex(x["object_id"]), x["name"],
                                             bytes.fromhex(x["stored_value"]))
          == x["value_ascii"].encode())

    # docs/FORMAT.md shows the same numbers.
    if os.path.exists(FORMAT_MD):
        doc = open(FORMAT_MD).read()
        values = [ex["volume_key"], ex["file_id"], ex["dir_id"], ex["file_20"]["ciphertext"],
                  ex["file_3"]["ciphertext"], n["backing"], ln["backing"]]
        values += list(ex["subkeys"].values())
        missing = [v for v in values if v not in doc]
        check("docs/FORMAT.md shows the worked example values", not missing)
    print("selftest: " + ("FAILED: " + "; ".join(failures) if failures else "all passed"))
    return 1 if failures else 0


# --- command line -----------------------------------------------------------

def read_key(path):
    raw = open(path, "rb").read()
    if len(raw) == 64:
        return raw
    text = raw.strip()
    if len(text) == 128:
        return bytes.fromhex(text.decode())
    raise SystemExit("the key file must hold 64 raw bytes or 128 hex digits")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--key-file", help="64-byte volume key (raw or hex)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("decrypt-file")
    p.add_argument("backing_file")
    p.add_argument("-o", "--output")
    p = sub.add_parser("decrypt-name")
    p.add_argument("dir_id_hex")
    p.add_argument("name", help="short backing name, or a long name's companion text")
    p = sub.add_parser("ls")
    p.add_argument("backing_dir")
    p = sub.add_parser("check-volume")
    p.add_argument("backing_root")
    p = sub.add_parser("decrypt-image")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    sub.add_parser("selftest")
    args = ap.parse_args(argv)

    if args.cmd == "selftest":
        return selftest()
    if not args.key_file:
        ap.error("--key-file is required")
    key = read_key(args.key_file)
    if args.cmd == "decrypt-file":
        file_id = os.getxattr(args.backing_file, XATTR_ID)
        plain = decrypt_file(key, file_id, open(args.backing_file, "rb").read())
        if args.output:
            open(args.output, "wb").write(plain)
        else:
            sys.stdout.buffer.write(plain)
    elif args.cmd == "decrypt-name":
        name = decrypt_name(key, bytes.fromhex(args.dir_id_hex), args.name)
        print(name if isinstance(name, str) else repr(name))
    elif args.cmd == "ls":
        dir_id = os.getxattr(args.backing_dir, XATTR_ID)
        for entry in sorted(os.listdir(args.backing_dir)):
            if entry.startswith(".") and not entry.startswith(".L"):
                continue  # reserved: header, .N companions
            text = entry
            if entry.startswith(".L"):
                text = open(os.path.join(args.backing_dir, ".N" + entry[2:])).read()
            try:
                print(f"{entry}\t{decrypt_name(key, dir_id, text)}")
            except Exception:
                print(f"{entry}\t<does not decrypt>")
    elif args.cmd == "decrypt-image":
        with open(args.image, "rb") as src, open(args.output, "wb") as dst:
            decrypt_image(key, src, dst)
    elif args.cmd == "check-volume":
        lines = open(os.path.join(args.backing_root, HEADER)).read().splitlines()
        if lines[0] != "scratchcrypt-volume 2":
            print(f"not a format 2 volume: {lines[0]!r}")
            return 1
        fields = dict(line.split(" ", 1) for line in lines[1:] if line)
        ok = fields.get("key-check") == derive(key, "key-check", 16).hex()
        print("key matches the volume" if ok else "key does NOT match the volume")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
