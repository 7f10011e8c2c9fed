#include "fuse/encrypted_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "fuse/fault_injection.h"
#include "fuse/full_io.h"

namespace scratchcrypt {

namespace {

constexpr uint64_t U = kDataUnitBytes;

// One reusable bounce buffer per thread: requests are up to 1 MiB, and
// allocating per request would dominate small I/O.
std::span<uint8_t> bounce_buffer(size_t size) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return {buffer.data(), size};
}

// Reads exactly `length` stored bytes; a shorter backing file means it was
// changed behind our back, which we report as an I/O error.
int read_stored(int fd, uint8_t* data, size_t length, uint64_t offset) {
  ssize_t n = pread_full(fd, data, length, offset);
  if (n < 0) return static_cast<int>(n);
  return static_cast<size_t>(n) == length ? 0 : -EIO;
}

// A write of stored bytes by the data path (fault injection point
// "store-eio"); rollbacks use pwrite_full directly.
int write_stored(int fd, const uint8_t* data, size_t length, uint64_t offset) {
  if (fault_injected("store-eio")) return -EIO;
  ssize_t n = pwrite_full(fd, data, length, offset);
  return n < 0 ? static_cast<int>(n) : 0;
}

// ftruncate of the backing file (fault injection point "ftruncate-eio").
int truncate_stored(int fd, uint64_t size) {
  if (fault_injected("ftruncate-eio")) return -EIO;
  return ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? 0 : -errno;
}

}  // namespace

void StoredUndo::save(uint64_t offset, const uint8_t* stored, size_t length) {
  if (length == 0) return;
  saved_.push_back({offset, std::vector<uint8_t>(stored, stored + length)});
}

int StoredUndo::fail(int err) {
  // Cut first: bytes beyond the old end go, then the old bytes come back
  // into blocks that are already allocated.
  struct stat st;
  if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) != old_size_) {
    if (::ftruncate(fd_, static_cast<off_t>(old_size_)) != 0) return err;
  }
  for (const Saved& s : saved_) pwrite_full(fd_, s.bytes.data(), s.bytes.size(), s.offset);
  return err;
}

int StoredUndo::restore_unit(uint64_t offset) {
  for (const Saved& s : saved_) {
    if (s.offset != offset) continue;
    ssize_t n = pwrite_full(fd_, s.bytes.data(), s.bytes.size(), s.offset);
    return n < 0 ? static_cast<int>(n) : 0;
  }
  return 0;
}

ssize_t EncryptedFile::read(uint64_t offset, std::span<uint8_t> out, uint64_t size) {
  if (offset >= size || out.empty()) return 0;
  const uint64_t end = std::min<uint64_t>(offset + out.size(), size);
  const uint64_t first = offset / U;
  const uint64_t span_start = first * U;
  const uint64_t span_end = std::min<uint64_t>(size, ((end - 1) / U + 1) * U);
  const size_t span_length = span_end - span_start;

  // Aligned reads decrypt straight into the caller's buffer.
  const bool direct = offset == span_start && out.size() >= span_length;
  std::span<uint8_t> units = direct ? out.first(span_length) : bounce_buffer(span_length);
  if (int err = read_stored(fd_, units.data(), span_length, span_start)) return err;
  cipher_.decrypt(id_, first, units, units);
  if (!direct) std::memcpy(out.data(), units.data() + (offset - span_start), end - offset);
  return static_cast<ssize_t>(end - offset);
}

ssize_t EncryptedFile::write(uint64_t offset, std::span<const uint8_t> data, uint64_t* size) {
  if (data.empty()) return 0;
  const uint64_t old_size = *size;
  const uint64_t end = offset + data.size();
  const uint64_t new_size = std::max(old_size, end);
  const uint64_t first = offset / U;
  const uint64_t last = (end - 1) / U;
  StoredUndo undo(fd_, old_size);

  // A partial last unit before the written range becomes a full unit.
  const uint64_t old_tail = old_size / U;
  if (old_size % U != 0 && old_tail < first) {
    if (int err = reshape_unit(old_tail, old_size % U, U, undo)) return undo.fail(err);
  }

  const uint64_t span_start = first * U;
  const uint64_t span_end = std::min(new_size, (last + 1) * U);
  std::span<uint8_t> buf = bounce_buffer(span_end - span_start);

  // Fill the parts of the first and last units that this write keeps: old
  // plaintext where the file had data, zeros beyond the old end.
  auto load_unit = [&](uint64_t unit) -> int {
    uint8_t* dst = buf.data() + (unit - first) * U;
    const size_t new_length = unit_length(unit, new_size);
    const size_t old_length = unit_length(unit, old_size);
    if (old_length > 0) {
      if (int err = read_stored(fd_, dst, old_length, unit * U)) return err;
      undo.save(unit * U, dst, old_length);
      cipher_.decrypt(id_, unit, {dst, old_length}, {dst, old_length});
    }
    std::memset(dst + old_length, 0, new_length - old_length);
    return 0;
  };
  if (offset != span_start) {
    if (int err = load_unit(first)) return undo.fail(err);
  }
  if (end < span_end && (last != first || offset == span_start)) {
    if (int err = load_unit(last)) return undo.fail(err);
  }

  // Units the write covers completely are encrypted straight from `data`
  // (no copy of the request); only partial first and last units are
  // assembled in `buf` from kept and new plaintext.
  const bool head_partial = offset != span_start;
  const bool tail_partial = end < span_end;
  auto patch_unit = [&](uint64_t unit) {
    const uint64_t start = unit * U;
    const size_t length = unit_length(unit, new_size);
    uint8_t* dst = buf.data() + (start - span_start);
    const uint64_t from = std::max(start, offset);
    const uint64_t to = std::min(start + length, end);
    std::memcpy(dst + (from - start), data.data() + (from - offset), to - from);
    cipher_.encrypt(id_, unit, {dst, length}, {dst, length});
  };
  if (head_partial) patch_unit(first);
  if (tail_partial && (last != first || !head_partial)) patch_unit(last);
  const uint64_t direct_first = head_partial ? first + 1 : first;
  const uint64_t direct_end = tail_partial ? last : last + 1;  // exclusive
  if (direct_first < direct_end) {
    const uint64_t start = direct_first * U;
    const uint64_t stop = std::min(span_end, direct_end * U);
    cipher_.encrypt(id_, direct_first, data.subspan(start - offset, stop - start),
                    buf.subspan(start - span_start, stop - start));
  }
  size_t stored = 0;
  ssize_t n = fault_injected("store-eio") || fault_injected("main-store-eio")
                  ? -EIO
                  : pwrite_full(fd_, buf.data(), buf.size(), span_start, &stored);
  if (n < 0) {
    // Whole units stored before the error hold new data, each encrypted at
    // its final length (only the file's last unit is shorter, and it was not
    // reached): keep them as a short write, as a full local disk does.
    const uint64_t valid_end = std::min(end, span_start + stored / U * U);
    if (valid_end <= offset) return undo.fail(static_cast<int>(n));
    const uint64_t kept_size = std::max(old_size, valid_end);
    if (valid_end < old_size) {
      undo.restore_unit(valid_end);  // a torn unit we had read
    } else if (::ftruncate(fd_, static_cast<off_t>(kept_size)) != 0) {
      return undo.fail(-errno);
    }
    *size = kept_size;
    return static_cast<ssize_t>(valid_end - offset);
  }
  *size = new_size;
  return static_cast<ssize_t>(data.size());
}

int EncryptedFile::truncate(uint64_t new_size, uint64_t* size) {
  const uint64_t old_size = *size;
  if (new_size == old_size) return 0;
  StoredUndo undo(fd_, old_size);
  if (new_size < old_size) {
    const uint64_t cut = new_size / U;
    if (new_size % U != 0) {
      const size_t cut_length = unit_length(cut, old_size);
      if (int err = reshape_unit(cut, cut_length, new_size % U, undo)) return undo.fail(err);
    }
    if (int err = truncate_stored(fd_, new_size)) return undo.fail(err);
  } else {
    // Grow first: it fails (EFBIG, ENOSPC) before anything was rewritten.
    if (int err = truncate_stored(fd_, new_size)) return err;
    if (old_size % U != 0) {
      const uint64_t tail = old_size / U;
      if (int err = reshape_unit(tail, old_size % U, unit_length(tail, new_size), undo)) {
        return undo.fail(err);
      }
    }
    // A new last unit of 16 bytes or more reads as a hole. A shorter one
    // cannot (it is never hole-tested), so it is stored as encrypted zeros.
    const uint64_t tail = new_size / U;
    const size_t tail_length = new_size % U;
    if (tail_length != 0 && tail_length < kXtsMinBytes && tail * U >= old_size) {
      uint8_t zeros[kXtsMinBytes] = {};
      cipher_.encrypt(id_, tail, {zeros, tail_length}, {zeros, tail_length});
      if (int err = write_stored(fd_, zeros, tail_length, tail * U)) return undo.fail(err);
    }
  }
  *size = new_size;
  return 0;
}

int EncryptedFile::punch_hole(uint64_t offset, uint64_t length, uint64_t size) {
  const uint64_t end = std::min(offset + length, size);
  if (offset >= end) return 0;
  const uint64_t first = offset / U;
  const uint64_t last = (end - 1) / U;

  // A unit that the range covers completely can become a real hole, unless
  // it is a short tail that must stay encrypted (see truncate()).
  auto covered = [&](uint64_t unit) {
    const size_t unit_len = unit_length(unit, size);
    return offset <= unit * U && unit * U + unit_len <= end && unit_len >= kXtsMinBytes;
  };
  StoredUndo undo(fd_, size);
  auto zero_part = [&](uint64_t unit) {
    const uint64_t start = unit * U;
    const size_t from = static_cast<size_t>(std::max(offset, start) - start);
    const size_t to = static_cast<size_t>(std::min(end, start + U) - start);
    return zero_within_unit(unit, unit_length(unit, size), from, to, undo);
  };

  uint64_t hole_first = first;
  uint64_t hole_last = last;  // inclusive
  if (!covered(first)) {
    if (int err = zero_part(first)) return undo.fail(err);
    ++hole_first;
  }
  if (last >= hole_first && !covered(last)) {
    if (int err = zero_part(last)) return undo.fail(err);
    if (hole_last == 0) return 0;
    --hole_last;
  }
  if (hole_first <= hole_last && hole_last != UINT64_MAX) {
    const uint64_t from = hole_first * U;
    const uint64_t to = std::min(size, (hole_last + 1) * U);
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                    static_cast<off_t>(to - from)) != 0) {
      return undo.fail(-errno);
    }
  }
  return 0;
}

int EncryptedFile::reshape_unit(uint64_t unit, size_t old_length, size_t new_length,
                                StoredUndo& undo) {
  std::span<uint8_t> buf = bounce_buffer(std::max(old_length, new_length));
  if (int err = read_stored(fd_, buf.data(), old_length, unit * U)) return err;
  undo.save(unit * U, buf.data(), old_length);
  cipher_.decrypt(id_, unit, buf.first(old_length), buf.first(old_length));
  if (new_length > old_length) std::memset(buf.data() + old_length, 0, new_length - old_length);
  cipher_.encrypt(id_, unit, buf.first(new_length), buf.first(new_length));
  return write_stored(fd_, buf.data(), new_length, unit * U);
}

int EncryptedFile::zero_within_unit(uint64_t unit, size_t unit_len, size_t from, size_t to,
                                    StoredUndo& undo) {
  std::span<uint8_t> buf = bounce_buffer(unit_len);
  if (int err = read_stored(fd_, buf.data(), unit_len, unit * U)) return err;
  undo.save(unit * U, buf.data(), unit_len);
  cipher_.decrypt(id_, unit, buf, buf);
  std::memset(buf.data() + from, 0, to - from);
  cipher_.encrypt(id_, unit, buf, buf);
  return write_stored(fd_, buf.data(), unit_len, unit * U);
}

}  // namespace scratchcrypt
