// Randomized differential test: the same seeded stream of file operations
// runs on a scratchcrypt mount and on a native directory side by side; every
// return value, errno, the touched bytes and the touched files' metadata must
// agree after every step, and all contents every few thousand steps and
// after a remount.
//
// Reproduce a failure with SCRATCHCRYPT_SEED=<seed printed in the failure>
// (and SCRATCHCRYPT_DIFF_OPS=<count> to change the length of the run).
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <random>
#include <map>
#include <sstream>
#include <thread>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/test_util.h"

namespace sctest {
namespace {

constexpr int kSlots = 4;
constexpr uint64_t kMaxOffset = 1 << 20;  // files stay around 1 MiB
constexpr uint64_t kUnit = 4096;

// One tree the operations run on: a root directory and open descriptors.
struct Side {
  std::string root;
  std::array<int, kSlots> slots{};
  Side() { slots.fill(-1); }
  // Descriptors kept open per name (a FUSE open costs several round
  // trips); dropped whenever the name may point elsewhere.
  std::map<std::string, int> by_name;
  std::string path(const std::string& name) const { return root + "/" + name; }
  int cached_fd(const std::string& name, bool create) {
    auto it = by_name.find(name);
    if (it != by_name.end()) return it->second;
    int fd = ::open(path(name).c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd >= 0) by_name[name] = fd;
    return fd;
  }
  void forget(const std::string& name) {
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    ::close(it->second);
    by_name.erase(it);
  }
  void close_all() {
    for (int& fd : slots) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    for (auto& [name, fd] : by_name) ::close(fd);
    by_name.clear();
  }
};

// The result of one operation on one side.
struct Outcome {
  long rc = 0;
  int err = 0;
  std::string data;  // bytes read, when the operation reads
  bool operator==(const Outcome& o) const { return rc == o.rc && err == o.err && data == o.data; }
};

std::string describe(const Outcome& o) {
  std::ostringstream out;
  out << "rc=" << o.rc << " errno=" << o.err << " (" << (o.err ? strerror(o.err) : "-") << ") "
      << o.data.size() << " bytes read";
  return out.str();
}

uint64_t env_number(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 0) : fallback;
}

// One stream of operations on its own files (a subdirectory of each side).
// Several streams run at once, like the jobs' threads would.
class Stream {
 public:
  Stream(const std::string& native_root, const std::string& crypt_root, int index)
      : index_(index) {
    native_.root = native_root + "/s" + std::to_string(index);
    crypt_.root = crypt_root + "/s" + std::to_string(index);
    for (Side* s : {&native_, &crypt_}) {
      if (::mkdir(s->root.c_str(), 0755) != 0 || ::mkdir(s->path("d").c_str(), 0755) != 0) {
        ADD_FAILURE() << "mkdir in " << s->root << ": " << strerror(errno);
      }
    }
    for (int i = 0; i < 5; ++i) names_.push_back("f" + std::to_string(i));
    for (int i = 0; i < 3; ++i) names_.push_back("d/g" + std::to_string(i));
  }
  ~Stream() { close_all(); }
  void close_all() {
    native_.close_all();
    crypt_.close_all();
  }

  struct Stats {
    std::array<uint64_t, 16> counts{};
    std::array<double, 16> seconds{};
  };
  // Runs `ops` operations from `seed`; stops at the first difference.
  // Stops early (between operations) once `deadline` has passed.
  void run(uint64_t seed, uint64_t ops, bool trace, std::chrono::steady_clock::time_point deadline,
           Stats* stats);

  // Runs fn on both sides and requires identical outcomes.
  template <typename Fn>
  void both(const std::string& what, Fn fn) {
    Outcome a = fn(native_);
    Outcome b = fn(crypt_);
    ASSERT_TRUE(a == b) << what << "\n  native:       " << describe(a)
                        << "\n  scratchcrypt: " << describe(b)
                        << (a.data != b.data ? "\n  first differing byte at " +
                                                   std::to_string(first_difference(a.data, b.data))
                                             : std::string());
  }

  static bool HasFatalFailure() { return ::testing::Test::HasFatalFailure(); }

  void compare_meta(const std::string& name) {
    struct stat sa = {}, sb = {};
    errno = 0;
    int ra = ::lstat(native_.path(name).c_str(), &sa);
    int ea = errno;
    errno = 0;
    int rb = ::lstat(crypt_.path(name).c_str(), &sb);
    int eb = errno;
    ASSERT_EQ(ra, rb) << "lstat " << name << ": native errno " << ea << ", scratchcrypt errno " << eb;
    if (ra != 0) {
      ASSERT_EQ(ea, eb) << "lstat " << name;
      return;
    }
    ASSERT_EQ(sa.st_size, sb.st_size) << "size of " << name;
    ASSERT_EQ(sa.st_nlink, sb.st_nlink) << "nlink of " << name;
    ASSERT_EQ(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT) << "type of " << name;
  }

  void compare_contents(const std::string& name) {
    int ea = 0, eb = 0;
    const std::string a = read_file(native_.path(name), &ea);
    const std::string b = read_file(crypt_.path(name), &eb);
    ASSERT_EQ(ea, eb) << "reading " << name;
    ASSERT_TRUE(a == b) << "contents of " << name << " differ: sizes " << a.size() << " vs "
                        << b.size() << ", first difference at " << first_difference(a, b);
  }

  void compare_all() {
    for (const auto& name : names_) {
      compare_meta(name);
      if (HasFatalFailure()) return;
      compare_contents(name);
      if (HasFatalFailure()) return;
    }
  }

  void compare_all_public() { compare_all(); }

 private:
  int index_;
  Side native_, crypt_;
  std::vector<std::string> names_;
};

// Offsets and lengths that favour data-unit edges and short tails.
uint64_t pick_offset(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0: {
      const uint64_t unit = rng() % (kMaxOffset / kUnit);
      const int64_t delta = static_cast<int64_t>(rng() % 33) - 16;
      return static_cast<uint64_t>(std::max<int64_t>(0, static_cast<int64_t>(unit * kUnit) + delta));
    }
    case 1: return rng() % 20000;
    default: return rng() % kMaxOffset;
  }
}

uint64_t pick_length(std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 0: return 1 + rng() % 16;
    case 1: return 1 + rng() % 200;
    case 2: return kUnit + (rng() % 33) - 16;
    case 3: return 1 + rng() % 70000;
    default: return 1 + rng() % 6000;
  }
}

void Stream::run(uint64_t seed, uint64_t ops, bool trace,
                 std::chrono::steady_clock::time_point deadline, Stats* stats) {
  const uint64_t full_every = 5000;
  auto& counts = stats->counts;
  auto& op_seconds = stats->seconds;
  std::mt19937_64 rng(seed);

  for (uint64_t i = 0; i < ops; ++i) {
    if (i % 128 == 0 && std::chrono::steady_clock::now() > deadline) break;
    const std::string name = names_[rng() % names_.size()];
    const std::string other = names_[rng() % names_.size()];
    const int slot = static_cast<int>(rng() % kSlots);
    const bool via_slot = native_.slots[slot] >= 0 && rng() % 2 == 0;
    const uint64_t off = pick_offset(rng);
    const uint64_t len = pick_length(rng);
    const uint64_t data_seed = rng();
    const unsigned op = static_cast<unsigned>(rng() % 1000);
    const auto op_started = std::chrono::steady_clock::now();
    const auto counts_before = counts;
    SCOPED_TRACE("SCRATCHCRYPT_SEED=" + std::to_string(seed) + " stream " + std::to_string(index_) +
                 ", op #" + std::to_string(i));
    std::ostringstream what;
    what << "stream " << index_ << " (seed " << seed << "), op #" << i << ": ";
    std::string touched = name;
    uint64_t touched_off = off, touched_len = len;

    // Opens `name` for one operation, or uses the slot's descriptor.
    const bool fresh_open = rng() % 16 == 0;
    auto target = [&](Side& s, int flags, bool* owned) {
      *owned = false;
      if (via_slot) return s.slots[slot];
      if (!fresh_open) return s.cached_fd(name, (flags & O_CREAT) != 0);
      *owned = true;
      return ::open(s.path(name).c_str(), flags | O_CLOEXEC, 0644);
    };
    auto with_fd = [&](int flags, auto body) {
      return [&, flags, body](Side& s) {
        Outcome o;
        bool owned = false;
        errno = 0;
        int fd = target(s, flags, &owned);
        if (fd < 0) {
          o.rc = -1000;  // open failed: compare its errno
          o.err = errno;
          return o;
        }
        errno = 0;
        body(fd, o);
        if (owned) ::close(fd);
        return o;
      };
    };
    const std::string where = via_slot ? "slot " + std::to_string(slot) : name;

    if (op < 300) {
      counts[0]++;
      what << "pwrite " << where << " at " << off << " len " << len;
      const std::string data = pattern(len, data_seed);
      both(what.str(), with_fd(O_WRONLY | O_CREAT, [&](int fd, Outcome& o) {
             o.rc = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
             o.err = o.rc < 0 ? errno : 0;
           }));
    } else if (op < 450) {
      counts[1]++;
      what << "pread " << where << " at " << off << " len " << len;
      both(what.str(), with_fd(O_RDONLY, [&](int fd, Outcome& o) {
             o.data.resize(len);
             o.rc = ::pread(fd, o.data.data(), len, static_cast<off_t>(off));
             o.err = o.rc < 0 ? errno : 0;
             o.data.resize(o.rc > 0 ? static_cast<size_t>(o.rc) : 0);
           }));
    } else if (op < 520) {
      counts[2]++;
      const uint64_t size = rng() % 3 == 0 ? rng() % 40 : rng() % (kMaxOffset + 70000);
      what << "truncate " << where << " to " << size;
      touched_off = size > 5000 ? size - 5000 : 0;
      touched_len = 10000;
      if (via_slot) {
        both(what.str(), [&](Side& s) {
          Outcome o;
          errno = 0;
          o.rc = ::ftruncate(s.slots[slot], static_cast<off_t>(size));
          o.err = o.rc ? errno : 0;
          return o;
        });
      } else {
        both(what.str(), [&](Side& s) {
          Outcome o;
          errno = 0;
          o.rc = ::truncate(s.path(name).c_str(), static_cast<off_t>(size));
          o.err = o.rc ? errno : 0;
          return o;
        });
      }
    } else if (op < 580) {
      counts[3]++;
      const int mode = rng() % 2 ? 0 : FALLOC_FL_KEEP_SIZE;
      what << "fallocate(" << (mode ? "KEEP_SIZE" : "0") << ") " << where << " at " << off
           << " len " << len;
      both(what.str(), with_fd(O_RDWR, [&](int fd, Outcome& o) {
             o.rc = ::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len));
             o.err = o.rc ? errno : 0;
           }));
    } else if (op < 640) {
      counts[4]++;
      what << "punch hole " << where << " at " << off << " len " << len;
      both(what.str(), with_fd(O_RDWR, [&](int fd, Outcome& o) {
             o.rc = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(off), static_cast<off_t>(len));
             o.err = o.rc ? errno : 0;
           }));
    } else if (op < 690) {
      counts[5]++;
      const unsigned flags = rng() % 4 == 0 ? RENAME_NOREPLACE : (rng() % 4 == 0 ? RENAME_EXCHANGE : 0);
      what << "rename " << name << " -> " << other << " flags " << flags;
      both(what.str(), [&](Side& s) {
        Outcome o;
        errno = 0;
        s.forget(name);
        s.forget(other);
        o.rc = ::renameat2(AT_FDCWD, s.path(name).c_str(), AT_FDCWD, s.path(other).c_str(), flags);
        o.err = o.rc ? errno : 0;
        return o;
      });
      if (!HasFatalFailure()) compare_meta(name);
      touched = other;
    } else if (op < 730) {
      counts[6]++;
      what << "link " << name << " -> " << other;
      both(what.str(), [&](Side& s) {
        Outcome o;
        errno = 0;
        s.forget(other);
        o.rc = ::link(s.path(name).c_str(), s.path(other).c_str());
        o.err = o.rc ? errno : 0;
        return o;
      });
      if (!HasFatalFailure()) compare_meta(name);
      touched = other;
    } else if (op < 770) {
      counts[7]++;
      what << "unlink " << name;
      both(what.str(), [&](Side& s) {
        Outcome o;
        errno = 0;
        s.forget(name);
        o.rc = ::unlink(s.path(name).c_str());
        o.err = o.rc ? errno : 0;
        return o;
      });
    } else if (op < 830) {
      counts[8]++;
      const bool sync_map = rng() % 16 == 0;  // MS_SYNC costs a backing fsync
      what << "mmap write " << where << " at " << off << " len " << len << (sync_map ? " MS_SYNC" : "");
      const std::string data = pattern(len, data_seed);
      both(what.str(), with_fd(O_RDWR, [&](int fd, Outcome& o) {
             struct stat st;
             if (::fstat(fd, &st) != 0 || st.st_size == 0) {
               o.rc = -2;
               return;
             }
             const size_t size = static_cast<size_t>(st.st_size);
             const size_t at = off % size;
             const size_t n = std::min<size_t>(len, size - at);
             void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
             if (map == MAP_FAILED) {
               o.rc = -3;
               o.err = errno;
               return;
             }
             memcpy(static_cast<char*>(map) + at, data.data(), n);
             o.rc = ::msync(map, size, sync_map ? MS_SYNC : MS_ASYNC);
             o.err = o.rc ? errno : 0;
             ::munmap(map, size);
             touched_off = at;
           }));
    } else if (op < 835) {
      counts[9]++;
      const bool full_sync = rng() % 2;
      what << (full_sync ? "fsync " : "fdatasync ") << where;
      both(what.str(), with_fd(O_RDONLY, [&](int fd, Outcome& o) {
             o.rc = full_sync ? ::fsync(fd) : ::fdatasync(fd);
             o.err = o.rc ? errno : 0;
           }));
    } else if (op < 940) {
      counts[10]++;
      const int flags = rng() % 3 == 0 ? O_RDONLY : (rng() % 2 ? O_RDWR : O_RDWR | O_CREAT);
      const bool trunc = rng() % 10 == 0;
      what << "open slot " << slot << " on " << name << " flags " << flags << (trunc ? " O_TRUNC" : "");
      both(what.str(), [&](Side& s) {
        Outcome o;
        if (s.slots[slot] >= 0) ::close(s.slots[slot]);
        errno = 0;
        s.slots[slot] = ::open(s.path(name).c_str(), flags | (trunc ? O_TRUNC : 0) | O_CLOEXEC, 0644);
        o.rc = s.slots[slot] >= 0 ? 0 : -1;
        o.err = o.rc ? errno : 0;
        return o;
      });
    } else if (op < 960) {
      counts[11]++;
      what << "close slot " << slot;
      for (Side* s : {&native_, &crypt_}) {
        if (s->slots[slot] >= 0) ::close(s->slots[slot]);
        s->slots[slot] = -1;
      }
    } else {
      counts[12]++;
      what << "append " << where << " len " << len;
      const std::string data = pattern(len % 9000 + 1, data_seed);
      both(what.str(), [&](Side& s) {
        Outcome o;
        errno = 0;
        int fd = ::open(s.path(name).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0) {
          o.rc = -1000;
          o.err = errno;
          return o;
        }
        o.rc = ::write(fd, data.data(), data.size());
        o.err = o.rc < 0 ? errno : 0;
        struct stat st;
        ::fstat(fd, &st);
        touched_off = static_cast<uint64_t>(st.st_size) > 10000 ? st.st_size - 10000 : 0;
        touched_len = 10000;
        ::close(fd);
        return o;
      });
    }
    if (trace) std::printf("%s\n", what.str().c_str());
    if (HasFatalFailure()) return;

    // After every step: the touched file's metadata and bytes around the
    // touched range (through a fresh descriptor: the page cache and the
    // daemon must agree).
    const bool check_slot = via_slot && native_.slots[slot] >= 0;
    if (check_slot) {
      // The slot's file, whatever name it has now.
      struct stat sa = {}, sb = {};
      ASSERT_EQ(0, ::fstat(native_.slots[slot], &sa));
      ASSERT_EQ(0, ::fstat(crypt_.slots[slot], &sb)) << strerror(errno);
      ASSERT_EQ(sa.st_size, sb.st_size) << "size of slot " << slot << " after " << what.str();
      ASSERT_EQ(sa.st_nlink, sb.st_nlink) << "nlink of slot " << slot << " after " << what.str();
    } else {
      compare_meta(touched);
    }
    if (HasFatalFailure()) {
      ADD_FAILURE() << "after " << what.str();
      return;
    }
    {
      const uint64_t from = touched_off > 64 ? touched_off - 64 : 0;
      const size_t length = static_cast<size_t>(std::min<uint64_t>(touched_len + 128, 16384));
      std::ostringstream check;
      check << "re-read of " << (check_slot ? "slot " + std::to_string(slot) : touched) << " [" << from << ", +" << length << ") after " << what.str();
      both(check.str(), [&](Side& s) {
        Outcome o;
        errno = 0;
        int fd = check_slot ? s.slots[slot] : s.cached_fd(touched, false);
        if (fd < 0) {
          o.rc = -1000;
          o.err = errno;
          return o;
        }
        o.data = pread_str(fd, length, static_cast<off_t>(from));
        o.rc = static_cast<long>(o.data.size());
        return o;
      });
      if (HasFatalFailure()) return;
    }
    for (size_t k = 0; k < counts.size(); ++k) {
      if (counts[k] != counts_before[k]) {
        op_seconds[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - op_started).count();
      }
    }
    if ((i + 1) % full_every == 0) {
      compare_all();
      if (HasFatalFailure()) {
        ADD_FAILURE() << "full comparison after op #" << i << " (seed " << seed << ")";
        return;
      }
    }
  }
}

void run_differential(bool writeback_cache, uint64_t default_ops, uint64_t default_budget) {
  const uint64_t seed = env_number("SCRATCHCRYPT_SEED", 20261124);
  const uint64_t ops = env_number("SCRATCHCRYPT_DIFF_OPS", default_ops);
  const int streams = static_cast<int>(env_number("SCRATCHCRYPT_DIFF_STREAMS", 4));
  const bool trace = env_number("SCRATCHCRYPT_DIFF_TRACE", 0) != 0;  // print every operation
  // A time budget keeps `make test` bounded on a slow or busy machine; the
  // operations run are always a prefix of the seeded sequence. 0 = none.
  const uint64_t budget = env_number("SCRATCHCRYPT_DIFF_SECONDS", default_budget);
  std::printf("differential (%s): SCRATCHCRYPT_SEED=%llu, %llu operations in %d streams (stream k "
              "uses seed+k)\n",
              writeback_cache ? "--writeback-cache" : "write-through",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(ops), streams);
  Mount mount(MountOptions{writeback_cache ? std::vector<std::string>{"--writeback-cache"}
                                           : std::vector<std::string>{},
                           {}});
  ASSERT_TRUE(mount.ok()) << mount.mount_result().output;
  // The reference side lives on tmpfs: its fsyncs cost nothing, so the run
  // time is the mount's.
  TempDir native("native", "/dev/shm");
  ASSERT_FALSE(native.path().empty());
  std::vector<std::unique_ptr<Stream>> list;
  for (int k = 0; k < streams; ++k) list.push_back(std::make_unique<Stream>(native.path(), mount.mnt(), k));
  ASSERT_FALSE(::testing::Test::HasFailure());
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = budget == 0 ? std::chrono::steady_clock::time_point::max()
                                    : started + std::chrono::seconds(budget);
  std::vector<Stream::Stats> stats(static_cast<size_t>(streams));
  std::vector<std::thread> threads;
  for (int k = 0; k < streams; ++k) {
    threads.emplace_back([&, k] {
      list[static_cast<size_t>(k)]->run(seed + static_cast<uint64_t>(k), ops / static_cast<uint64_t>(streams),
                                        trace, deadline, &stats[static_cast<size_t>(k)]);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_FALSE(::testing::Test::HasFailure());
  for (auto& s : list) s->compare_all_public();
  ASSERT_FALSE(::testing::Test::HasFailure());
  // And once more from the backing store alone (block layout: its kernel
  // file system cannot be remounted, so its caches are written out and
  // dropped instead, and everything is read back through the image).
  for (auto& s : list) s->close_all();
  if (block_layout()) {
    ASSERT_TRUE(drop_caches());
  } else {
    ASSERT_TRUE(mount.remount());
  }
  for (auto& s : list) s->compare_all_public();
  ASSERT_FALSE(::testing::Test::HasFailure()) << "after remount (seed " << seed << ")";
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  Stream::Stats total;
  for (auto& st : stats) {
    for (size_t k = 0; k < total.counts.size(); ++k) {
      total.counts[k] += st.counts[k];
      total.seconds[k] += st.seconds[k];
    }
  }
  const char* kinds[] = {"write", "read", "truncate", "fallocate", "punch", "rename", "link",
                         "unlink", "mmap", "fsync", "open", "close", "append"};
  uint64_t done = 0;
  std::printf("differential: ");
  for (size_t k = 0; k < 13; ++k) {
    std::printf("%s %llu (%.1f s) ", kinds[k], static_cast<unsigned long long>(total.counts[k]),
                total.seconds[k]);
    done += total.counts[k];
  }
  std::printf("\ndifferential: %llu operations in %.1f s\n", static_cast<unsigned long long>(done), seconds);
  if (done + static_cast<uint64_t>(streams) < ops) {
    std::printf("differential: NOTE: the %llu s budget (SCRATCHCRYPT_DIFF_SECONDS) ended the run "
                "after %llu of %llu operations; this machine's FUSE round trips are slow\n",
                static_cast<unsigned long long>(budget), static_cast<unsigned long long>(done),
                static_cast<unsigned long long>(ops));
  }
  EXPECT_GE(done, std::min<uint64_t>(ops, 10000)) << "too few operations ran to mean anything";
}

TEST(Differential, RandomOperationsMatchNativeFilesystem) {
  run_differential(false, 100000, 60);
}

TEST(Differential, RandomOperationsMatchNativeFilesystemWithWritebackCache) {
  SKIP_ON_BLOCK_LAYOUT("--writeback-cache is a files-layout mode");
  run_differential(true, 40000, 30);
}

}  // namespace
}  // namespace sctest
