#include "tools/wipe.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include "crypto/keyring.h"
#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/volume.h"
#include "tools/health.h"
#include "fuse/loop_device.h"
#include "tools/block_teardown.h"
#include "tools/holders.h"
#include "tools/metrics.h"
#include "fuse/unique_fd.h"
#include "tools/walk_tree.h"
#include "tools/wipe_record.h"

namespace scratchcrypt {

namespace {

using namespace std::chrono_literals;

constexpr const char* kTrashPrefix = ".wiped-";

struct Target {
  std::string id;
  std::string backing;
  std::string mountpoint;  // empty when not mounted
  pid_t pid = 0;
  std::string job;
  uid_t uid = 0;
  bool block = false;  // block layout: the mount is a kernel file system on a loop device
  std::optional<VolumeRecord> record;
};

bool is_under(const std::string& path, const std::string& root) {
  return path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
         path[root.size()] == '/';
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::optional<std::string> mount_of_volume(const std::string& id) {
  std::optional<std::string> found;
  for (const auto& m : list_mounts()) {
    if (m.fstype == "fuse.scratchcrypt" && m.source == "scratchcrypt:" + id) found = m.mountpoint;
  }
  return found;
}

// The id of the block-layout volume whose file system is mounted at `path`.
std::optional<std::string> block_volume_mounted_at(const std::string& path) {
  auto mount = mount_at(path);
  if (!mount || mount->source.rfind("/dev/loop", 0) != 0) return std::nullopt;
  const std::string label = loop_label(mount->source);
  if (label.rfind("scratchcrypt:", 0) != 0) return std::nullopt;
  return label.substr(std::strlen("scratchcrypt:"));
}

// A backing directory under backing_root holding volume `id`.
std::optional<std::string> find_backing(const Config& config, const std::string& id) {
  const std::string root = resolved_path(config.backing_root);
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return std::nullopt;
  std::optional<std::string> found;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string path = root + "/" + entry->d_name;
    auto header = read_volume_header(path);
    if (header && header->id == id) {
      found = path;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

std::optional<VolumeRecord> record_of(const std::string& id) {
  for (auto& record : registered_volumes()) {
    if (record.id == id) return record;
  }
  return std::nullopt;
}

bool is_volume_id(const std::string& text) {
  return text.size() == 32 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Which volume `given` names, and where its mount and backing are. A volume
// this node's registry knows is wiped where it is; one found only on disk
// must lie under backing_root. The backing must hold that very volume.
Target resolve(const Config& config, const std::string& given) {
  const std::string path = absolute_path(given);
  std::string id;
  if (is_volume_id(given) && (record_of(given) || mount_of_volume(given) || find_backing(config, given))) {
    id = given;
  } else if (auto block_id = block_volume_mounted_at(path)) {
    id = *block_id;
  } else if (auto mount = mount_at(path); mount && mount->fstype == "fuse.scratchcrypt") {
    id = mount->source.substr(mount->source.find(':') + 1);
  } else if (auto header = read_volume_header(path)) {
    id = header->id;
  } else if (auto record = find_volume(path)) {
    id = record->id;
  } else {
    throw Error(given + " is not a scratchcrypt volume (no mount, backing or record of one; "
                "was it already wiped?); nothing was touched", 4);
  }
  Target t;
  t.id = id;
  const auto record = record_of(id);
  if (record) {
    t = {record->id, record->backing, record->mountpoint, record->pid, record->job, record->uid,
         record->layout == "block", record};
  } else if (auto header = read_volume_header(path); header && header->id == id) {
    t.backing = path;
  } else {
    t.backing = find_backing(config, id).value_or("");
  }
  if (!t.backing.empty()) {
    const auto header = read_volume_header(t.backing);
    if (!header) {
      t.backing.clear();  // gone: end_volume says so
    } else if (header->layout == VolumeLayout::kBlock) {
      t.block = true;
    }
    if (header && header->id != t.id) {
      throw Error("the record of volume " + t.id + " names " + t.backing + ", which holds volume " +
                  header->id + " now (the record is stale); refusing to delete another volume; "
                  "nothing was touched. Wipe by mount point or backing directory instead", 4);
    }
  }
  if (t.block) {
    t.mountpoint = find_block_parts(t.id, t.record ? &*t.record : nullptr).mountpoint;
  } else if (t.mountpoint.empty() || !mount_at(t.mountpoint)) {
    t.mountpoint = mount_of_volume(t.id).value_or("");
  }
  const std::string root = resolved_path(config.backing_root);
  if (!record && !t.backing.empty() && !is_under(resolved_path(t.backing), root)) {
    throw Error("volume " + t.id + " is stored in " + t.backing + ", outside backing_root " +
                root + (config.path.empty() ? "" : " (set in " + config.path + ")") +
                ", and this node's registry does not know it; refusing to delete it. Use a "
                "configuration whose backing_root holds it", 4);
  }
  if (t.backing.empty() && t.mountpoint.empty()) {
    throw Error(given + ": volume " + t.id + " has nothing left to wipe; nothing was touched", 4);
  }
  return t;
}

// True while volume `id` exists anywhere this node knows of: mounted (in any
// mount namespace), served by a live daemon, or stored (under backing_root,
// or where its record says).
// `mounted`: volumes_mounted_anywhere().
bool volume_exists(const Config& config, const std::string& id, const std::set<std::string>& mounted) {
  if (mounted.count(id) != 0) return true;
  if (auto record = record_of(id)) {
    if (process_alive(record->pid)) return true;
    const auto header = read_volume_header(record->backing);
    if (header && header->id == id) return true;
  }
  return find_backing(config, id).has_value();
}

// Stops serving the volume. With force, aborts the FUSE connection first,
// so processes holding files get errors instead of data.
int cut_off(const Target& t, bool force) {
  if (t.block) return end_block_volume(find_block_parts(t.id, t.record ? &*t.record : nullptr), force);
  int holders = 0;
  if (!t.mountpoint.empty()) {
    const auto users = processes_using(t.mountpoint);
    holders = static_cast<int>(users.size());
    if (holders > 0 && !force) refuse_busy(t.mountpoint, "wipe");
    auto mount = mount_at(t.mountpoint);
    if (mount && (force || is_dead_mount(t.mountpoint))) {
      abort_fuse_connection(*mount);
      if (holders > 0) evict_cached_data(t.mountpoint);
      if (::umount2(t.mountpoint.c_str(), MNT_DETACH) != 0 && errno != EINVAL) {
        throw Error(errno_text("cannot detach " + t.mountpoint, errno));
      }
    } else if (mount && ::umount2(t.mountpoint.c_str(), 0) != 0) {
      if (errno == EBUSY) refuse_busy(t.mountpoint, "wipe");
      if (errno != EINVAL) throw Error(errno_text("cannot unmount " + t.mountpoint, errno));
    }
  }
  // The daemon zeroizes its key on the way out. One that does not leave is
  // asked to (SIGTERM: it zeroizes too), and only then killed (the kernel
  // frees its memory, but does not zero it).
  pid_t pid = t.pid;
  if (pid == 0 && !t.backing.empty()) pid = volume_lock_holder(t.backing).value_or(0);
  if (pid > 0 && !wait_for_exit(pid, 5s)) {
    ::kill(pid, SIGTERM);
    if (!wait_for_exit(pid, 5s)) {
      ::kill(pid, SIGKILL);
      wait_for_exit(pid, 2s);
    }
  }
  return holders;
}

// Deletes a tree without following links, whatever its depth or width
// (walk_tree's descriptors and stack are bounded); counts regular files and
// bytes deleted. A second pass catches what a file system whose directory
// positions do not survive a re-open made the first one miss.
void remove_tree(int parent_fd, const char* name, uint64_t* files, uint64_t* bytes) {
  struct stat st;
  for (int pass = 0; pass < 2 && ::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0; ++pass) {
    walk_tree(parent_fd, name, [&](int dir_fd, const char* entry, const struct stat& entry_st) {
      if (::unlinkat(dir_fd, entry, S_ISDIR(entry_st.st_mode) ? AT_REMOVEDIR : 0) == 0 &&
          S_ISREG(entry_st.st_mode)) {
        ++*files;
        *bytes += static_cast<uint64_t>(entry_st.st_size);
      }
    });
  }
}

// Discards the freed blocks of the backing file system (FITRIM), so that
// an SSD or thin volume drops them too.
std::string trim_free_space(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return "failed";
  fstrim_range range = {0, UINT64_MAX, 0};
  int rc = ::ioctl(fd, FITRIM, &range);
  int err = errno;
  ::close(fd);
  if (rc == 0) return "done";
  return err == EOPNOTSUPP || err == ENOTTY || err == EINVAL ? "unsupported" : "failed";
}

// Deletes a renamed-aside backing, verifies, and appends the record. Holds
// an exclusive flock on the trash directory meanwhile, so that others can
// tell a deletion in progress from one that died (see trash_state()).
UniqueFd lock_trash(const std::string& trash) {
  UniqueFd lock(::open(trash.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (lock.valid()) ::flock(lock.get(), LOCK_EX);
  return lock;
}

// `lock` is the caller's flock on `trash` (see lock_trash), or none.
void finish_deletion(const Config& config, const std::string& trash, WipeRecord record,
                     UniqueFd lock = {}) {
  const std::string parent = parent_dir(trash);
  if (!lock.valid()) lock = lock_trash(trash);
  int parent_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd >= 0) {
    const std::string name = trash.substr(parent.size() + (parent == "/" ? 0 : 1));
    remove_tree(parent_fd, name.c_str(), &record.files_removed, &record.bytes_removed);
    ::close(parent_fd);
  }
  record.deletion_finished_ms = now_ms();
  const bool deleted = !exists(trash);
  lock.reset();  // a waiting epilogue may return now
  // FITRIM scans the whole file system and can take many seconds, so it runs
  // after the record is written; its outcome goes to the log.
  const bool trim = deleted && config.trim;
  record.trim = trim ? "after-record" : "skipped";
  const bool mounted = !record.mountpoint.empty() && mount_of_volume(record.volume).has_value();
  const bool key_left = keyring::load(record.volume).has_value();
  // The path may already hold the next job's volume: only ours must be gone.
  const auto header = record.backing.empty() ? std::nullopt : read_volume_header(record.backing);
  const bool reappeared = header && header->id == record.volume;
  record.verified = deleted && !mounted && !key_left && !reappeared;
  if (!record.verified) {
    record.outcome = "failed";
    record.error = !deleted ? "backing files could not all be deleted"
                   : mounted ? "the volume is still mounted"
                   : key_left ? "the key is still in the keyring"
                              : "the backing directory reappeared";
  }
  append_record(config.record_log, record);
  update_metrics(config);
  if (!record.verified) throw Error("wipe of volume " + record.volume + " failed: " + record.error);
  if (trim) log::info("volume " + record.volume + ": trim of freed blocks " + trim_free_space(parent));
}

enum class TrashState { kGone, kDeleting, kAbandoned };

// Whether a renamed-aside backing is gone, being deleted, or left behind by
// a deletion that failed or died.
TrashState trash_state(const std::string& trash) {
  UniqueFd fd(::open(trash.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return exists(trash) ? TrashState::kAbandoned : TrashState::kGone;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return TrashState::kDeleting;
  return exists(trash) ? TrashState::kAbandoned : TrashState::kGone;
}

// Waits up to `timeout` for a background deletion. Throws when it failed;
// returns quietly when it finished or is still going (large volumes).
void await_deletion(const std::string& trash, const std::string& id,
                    std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    switch (trash_state(trash)) {
      case TrashState::kGone:
        return;
      case TrashState::kAbandoned:
        throw Error("volume " + id + " is crypto-erased, but its ciphertext in " + trash +
                    " could not all be deleted (see the wipe record); fix the cause, then run "
                    "`scratchcrypt sweep`");
      case TrashState::kDeleting:
        break;
    }
    if (std::chrono::steady_clock::now() > deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Runs `work` in a detached process (own session, stdio on /dev/null), so
// the caller, e.g. a scheduler epilogue, does not wait for it.
template <typename Work>
void run_detached(Work work) {
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) {
    work();
    return;
  }
  if (child > 0) {
    int status;
    ::waitpid(child, &status, 0);
    return;
  }
  ::setsid();
  if (::fork() != 0) _exit(0);
  int null = ::open("/dev/null", O_RDWR);
  ::dup2(null, 0);
  ::dup2(null, 1);
  ::dup2(null, 2);
  log::use_syslog();
  try {
    work();
  } catch (const std::exception& e) {
    log::error(e.what());
    _exit(1);
  }
  _exit(0);
}

void end_volume(const Config& config, const Target& t, const WipeOptions& options,
                const std::string& event) {
  WipeRecord record;
  record.event = event;
  record.started_ms = now_ms();
  record.volume = t.id;
  record.job = options.job.empty() ? t.job : options.job;
  record.uid = t.uid;
  record.backing = t.backing;
  record.mountpoint = t.mountpoint;
  record.forced = options.force;

  record.holders_cut_off = cut_off(t, options.force);
  record.key_found = keyring::remove(t.id);
  if (keyring::load(t.id)) throw Error("the key of volume " + t.id + " is still in the keyring");
  unregister_volume(t.id);
  record.crypto_erased_ms = now_ms();

  if (t.backing.empty()) {
    // Only the mount was found: the ciphertext is gone or elsewhere, so
    // nothing can be verified as deleted.
    record.deletion_finished_ms = now_ms();
    record.verified = false;
    record.outcome = "failed";
    record.error = "the ciphertext was not found, so it was not deleted (the key is destroyed)";
    append_record(config.record_log, record);
    update_metrics(config);
    throw Error("volume " + t.id + " is crypto-erased (unmounted, key destroyed), but its "
                "ciphertext was not found" + (t.mountpoint.empty() ? "" : " (it was mounted at " +
                t.mountpoint + ")") + ", so it was not deleted: find its backing directory and "
                "delete it (rm -rf), or check that backing_root is the one it was made under");
  }
  // Rename aside (atomic, same file system): the path is free at once.
  const std::string trash = parent_dir(t.backing) + "/" + kTrashPrefix + t.id;
  if (::rename(t.backing.c_str(), trash.c_str()) != 0) {
    throw Error(errno_text("cannot move the backing of volume " + t.id + " aside", errno));
  }
  if (options.wait) {
    finish_deletion(config, trash, record);
  } else {
    // Lock before forking: the deleter inherits the lock, so there is no
    // moment at which a waiter could take the trash for abandoned.
    UniqueFd lock = lock_trash(trash);
    run_detached([&] { finish_deletion(config, trash, record, std::move(lock)); });
    lock.reset();  // ours; the deleter's copy keeps the lock
    await_deletion(trash, t.id, options.deletion_grace);
  }
}


// Deletes what an earlier wipe left in `trash` (its key is destroyed, if it
// was not yet), with a record of its own.
void retry_deletion(const Config& config, const std::string& trash, const std::string& event) {
  WipeRecord record;
  record.event = event;
  record.volume = trash.substr(trash.rfind('/') + 1 + std::strlen(kTrashPrefix));
  record.started_ms = now_ms();
  record.key_found = keyring::remove(record.volume);
  record.crypto_erased_ms = now_ms();
  finish_deletion(config, trash, record);
}

}  // namespace

std::vector<std::string> abandoned_deletions(const Config& config) {
  const std::string root = resolved_path(config.backing_root);
  std::vector<std::string> abandoned;
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return abandoned;
  while (dirent* entry = ::readdir(dir)) {
    const std::string path = root + "/" + entry->d_name;
    if (std::strncmp(entry->d_name, kTrashPrefix, std::strlen(kTrashPrefix)) == 0 &&
        trash_state(path) == TrashState::kAbandoned) {
      abandoned.push_back(path);
    }
  }
  ::closedir(dir);
  std::sort(abandoned.begin(), abandoned.end());
  return abandoned;
}

void finish_abandoned_deletions(const Config& config) {
  for (const auto& path : abandoned_deletions(config)) {
    try {
      retry_deletion(config, path, "wipe-retry");
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "\nan earlier wipe on this node could not delete " +
                  path + "; the node needs an operator (see docs/OPERATIONS.md, \"A drained "
                  "node\")");
    }
  }
}


void wipe_volume(const Config& config, const std::string& target, const WipeOptions& options) {
  if (::geteuid() != 0) throw Error("wipe needs root", 2);
  end_volume(config, resolve(config, target), options, "wipe");
}

SweepResult sweep(const Config& config) {
  if (::geteuid() != 0) throw Error("sweep needs root", 2);
  SweepResult result;
  const std::string root = resolved_path(config.backing_root);
  if (DIR* dir = ::opendir(root.c_str())) {
    std::vector<std::string> names;
    while (dirent* entry = ::readdir(dir)) names.emplace_back(entry->d_name);
    ::closedir(dir);
    for (const auto& name : names) {
      if (name == "." || name == "..") continue;
      const std::string path = root + "/" + name;
      if (name.rfind(kTrashPrefix, 0) == 0) {  // a deletion that did not finish
        if (trash_state(path) == TrashState::kDeleting) continue;
        retry_deletion(config, path, "sweep");
        ++result.trash;
        continue;
      }
      auto header = read_volume_header(path);
      if (!header) continue;  // not ours: never touched
      if (volume_lock_holder(path)) continue;  // live: left alone
      Target t;
      t.id = header->id;
      t.backing = path;
      t.block = header->layout == VolumeLayout::kBlock;
      t.record = find_volume(t.id);
      if (t.record) {
        t.job = t.record->job;
        t.uid = t.record->uid;
      }
      t.mountpoint = t.block ? find_block_parts(t.id, t.record ? &*t.record : nullptr).mountpoint
                             : mount_of_volume(t.id).value_or("");
      if (!t.mountpoint.empty()) ++result.dead_mounts;
      const auto keys = keyring::list();
      if (std::find(keys.begin(), keys.end(), t.id) != keys.end()) ++result.keys;
      WipeOptions options;
      options.force = true;
      options.wait = true;
      end_volume(config, t, options, "sweep");
      ++result.volumes;
    }
  }
  // Keys of volumes that exist nowhere any more (a wipe or a mount that died
  // half-way): nothing can use them.
  const auto mounted = volumes_mounted_anywhere();
  for (const auto& id : keyring::list()) {
    if (volume_exists(config, id, mounted)) continue;
    WipeRecord record;
    record.event = "sweep";
    record.volume = id;
    record.started_ms = now_ms();
    record.key_found = keyring::remove(id);
    record.crypto_erased_ms = record.deletion_finished_ms = now_ms();
    record.verified = !keyring::load(id);  // no mount, no backing: only the key was left
    if (!record.verified) {
      record.outcome = "failed";
      record.error = "the key is still in the keyring";
    }
    append_record(config.record_log, record);
    if (record.verified) ++result.keys;
  }
  for (const auto& record : registered_volumes()) {
    if (!process_alive(record.pid)) unregister_volume(record.id);
  }
  for (const auto& m : list_mounts()) {
    const bool ours = m.fstype == "fuse.scratchcrypt" || m.fstype == "fuse.scratchcrypt-image";
    if (ours && is_dead_mount(m.mountpoint)) {
      abort_fuse_connection(m);
      if (::umount2(m.mountpoint.c_str(), MNT_DETACH) == 0) ++result.dead_mounts;
    }
  }
  return result;
}

}  // namespace scratchcrypt
