#include "fuse/block_image.h"

#include <linux/falloc.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "fuse/error.h"
#include "fuse/log.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace scratchcrypt {

namespace {

constexpr double kTimeout = 86400;  // nothing here ever changes behind the kernel's back

BlockImage& image_of(fuse_req_t req) { return *static_cast<BlockImage*>(fuse_req_userdata(req)); }

bool fill_attr(BlockImage& image, fuse_ino_t ino, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = 0;
  st->st_gid = 0;
  st->st_blksize = kSectorBytes;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0700;
    st->st_nlink = 2;
    return true;
  }
  if (ino != kImageIno) return false;
  st->st_mode = S_IFREG | 0600;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(image.store().size());
  struct stat backing;
  if (::fstat(image.store().fd(), &backing) == 0) {
    st->st_blocks = backing.st_blocks;
    st->st_mtim = backing.st_mtim;
    st->st_ctim = backing.st_ctim;
    st->st_atim = backing.st_atim;
  }
  return true;
}

void op_init(void*, fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE);
  conn->max_write = kMaxRequestBytes;
  conn->max_readahead = 0;  // direct_io: the kernel never reads ahead here
  // The loop device queues many asynchronous requests; let them reach the
  // worker threads instead of waiting in the kernel.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, kImageFileName) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param entry{};
  entry.ino = kImageIno;
  entry.generation = 1;
  entry.attr_timeout = kTimeout;
  entry.entry_timeout = kTimeout;
  fill_attr(image_of(req), kImageIno, &entry.attr);
  fuse_reply_entry(req, &entry);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  if (!fill_attr(image_of(req), ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, ino == kImageIno ? 0 : kTimeout);  // st_blocks changes
}

// The image has a fixed size, owner and mode: nothing may change them.
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  struct stat st;
  if (!fill_attr(image_of(req), ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const int harmless = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                       FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  if ((to_set & FUSE_SET_ATTR_SIZE) && ino == kImageIno && attr->st_size == st.st_size) {
    to_set &= ~FUSE_SET_ATTR_SIZE;
  }
  if (to_set & ~harmless) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fuse_reply_attr(req, &st, 0);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kImageIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (fi->flags & O_TRUNC) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fi->direct_io = 1;  // no page cache of the plaintext image
  fi->keep_cache = 0;
  fi->noflush = 1;
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  ImageStore& store = image_of(req).store();
  // Up to kMaxRequestBytes (all the kernel sends) the reply comes straight
  // from the store's decryption buffer: no copy, no second buffer per thread.
  std::vector<uint8_t> large;
  const uint8_t* data = nullptr;
  ssize_t n = -EINVAL;
  if (off >= 0 && size <= kMaxRequestBytes) {
    n = store.read_in_place(static_cast<uint64_t>(off), size, &data);
  } else if (off >= 0) {
    large.resize(size);
    n = store.read(static_cast<uint64_t>(off), large);
    data = large.data();
  }
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info*) {
  const ssize_t n = off < 0 ? -EINVAL
                            : image_of(req).store().write(
                                  static_cast<uint64_t>(off),
                                  {reinterpret_cast<const uint8_t*>(buf), size});
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
  } else {
    fuse_reply_write(req, static_cast<size_t>(n));
  }
}

// Discard and write-zeroes from the loop device arrive as PUNCH_HOLE or
// ZERO_RANGE with KEEP_SIZE; both become holes in the backing file.
void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t length, fuse_file_info*) {
  ImageStore& store = image_of(req).store();
  if (off < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  const uint64_t end = static_cast<uint64_t>(off) + static_cast<uint64_t>(length);
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    if ((mode & FALLOC_FL_ZERO_RANGE) && !(mode & FALLOC_FL_KEEP_SIZE) && end > store.size()) {
      fuse_reply_err(req, ENOSPC);
      return;
    }
    fuse_reply_err(req, -store.punch(static_cast<uint64_t>(off), static_cast<uint64_t>(length)));
    return;
  }
  if ((mode & ~FALLOC_FL_KEEP_SIZE) != 0) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  // Allocation: the image never grows, and within it every sector is
  // writable as long as the backing space reservation holds.
  fuse_reply_err(req, end > store.size() && !(mode & FALLOC_FL_KEEP_SIZE) ? ENOSPC : 0);
}

void op_ok(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

// Acknowledged writes are stored already (see the header), so there is
// nothing to do; ENOSYS says so once for good: the kernel then completes
// every later fsync of the image itself (fc->no_fsync) instead of sending
// a round trip for each of the two flushes of every journal commit.
void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  fuse_reply_err(req, ENOSYS);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  struct Entry {
    const char* name;
    fuse_ino_t ino;
    mode_t mode;
  };
  static const Entry entries[] = {{".", FUSE_ROOT_ID, S_IFDIR},
                                  {"..", FUSE_ROOT_ID, S_IFDIR},
                                  {kImageFileName, kImageIno, S_IFREG}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = off; i < 3; ++i) {
    struct stat st{};
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].mode;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

const fuse_lowlevel_ops kOperations = [] {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.fallocate = op_fallocate;
  ops.flush = op_ok;
  ops.release = op_ok;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  return ops;
}();

}  // namespace

void mark_io_flusher() {
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    log::warning(errno_text("cannot mark the request threads PR_SET_IO_FLUSHER (the daemon "
                            "needs CAP_SYS_RESOURCE); under memory pressure they may stall",
                            errno));
  }
}

const fuse_lowlevel_ops& BlockImage::operations() { return kOperations; }

}  // namespace scratchcrypt
