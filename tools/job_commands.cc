// `scratchcrypt prologue`, `epilogue` and `config`: the scheduler's side.
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "fuse/daemon.h"
#include "fuse/error.h"
#include "fuse/log.h"
#include "fuse/mounts.h"
#include "fuse/registry.h"
#include "fuse/unique_fd.h"
#include "fuse/volume.h"
#include "tools/commands.h"
#include "tools/config.h"
#include "tools/make_dirs.h"
#include "tools/metrics.h"
#include "tools/wipe.h"

namespace scratchcrypt {

const cli::Command kPrologueCommand = {
    "prologue",
    "[options]",
    "Job start (as root): mount the job's own freshly keyed volume; print SCRATCH=PATH.",
    "The job comes from the options or the scheduler's environment (Slurm: SLURM_JOB_ID,\n"
    "SLURM_JOB_UID or SLURM_JOB_USER, SLURM_JOB_GID). The volume is mounted at\n"
    "<mount_root>/<job id> (node mode: node_mount), owned by the job's user, mode 0700.\n"
    "backing_root and mount_root must be root's and not group/other-writable, and the\n"
    "job's mount point must not exist yet (refused, exit 4, otherwise).\n"
    "A non-zero exit fails the job's start.",
    {{"job", "ID", "job id (default: $SLURM_JOB_ID)"},
     {"uid", "USER", "job owner (default: $SLURM_JOB_UID or $SLURM_JOB_USER)"},
     {"gid", "GROUP", "job group (default: $SLURM_JOB_GID or the user's primary group)"},
     kConfigOption},
    0,
    0,
};

const cli::Command kEpilogueCommand = {
    "epilogue",
    "[options]",
    "Job end (as root): wipe the job's volume, cutting off processes left behind.",
    "Exits non-zero when the wipe could not be completed, so that the scheduler drains\n"
    "the node (Slurm does so for a failed Epilog) until an operator has looked at it.",
    {{"job", "ID", "job id (default: $SLURM_JOB_ID)"}, kConfigOption},
    0,
    0,
};

const cli::Command kConfigCommand = {
    "config",
    "[options] [KEY]",
    "Print the configuration in effect (all settings, or the value of KEY).",
    "",
    {kConfigOption},
    0,
    1,
};

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string job_id(const cli::Args& args) {
  std::string id = args.get("job", env("SLURM_JOB_ID"));
  if (id.empty()) id = env("SLURM_JOBID");
  if (id.empty()) throw Error("no job id: pass --job ID, or run from a Slurm prolog/epilog (SLURM_JOB_ID)", 2);
  // The id becomes a path component.
  if (id.size() > 64 || id == "." || id == ".." ||
      id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    throw Error("job id '" + id + "' is not usable as a directory name (letters, digits, . _ - only)", 2);
  }
  return id;
}

struct Paths {
  std::string backing;
  std::string mountpoint;
};

Paths job_paths(const Config& config, const std::string& job) {
  if (config.mode == VolumeMode::kNode) return {config.backing_root + "/node", config.node_mount};
  return {config.backing_root + "/" + job, config.mount_root + "/" + job};
}

void require_root(const std::string& what) {
  if (::geteuid() != 0) throw Error(what + " must run as root (from the scheduler's prolog/epilog)", 2);
}

// Opens (making it if missing) a directory the prologue makes job
// directories in, after checking that nobody but root can add, remove or
// replace entries in it: whoever can could plant a link or directory where
// the next job's volume goes.
UniqueFd open_root_dir(const std::string& what, const std::string& path, mode_t mode) {
  make_dirs(path, mode);
  const std::string real = resolved_path(path);
  UniqueFd fd(::open(real.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) throw Error(errno_text("cannot open " + what + " " + path, errno));
  if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    const std::string shown = path + (real != path ? " (" + real + ")" : "");
    throw Error(what + " " + shown + " is " +
                    (st.st_uid != 0 ? "owned by uid " + std::to_string(st.st_uid) : "writable by " +
                     std::string((st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group")) +
                    ": a user who can write into it could plant a link or directory where a job's "
                    "volume is mounted. Make it root's alone: chown root: " + real +
                    " && chmod go-w " + real,
                4);
  }
  return fd;
}

// Makes `name` in `dir_fd` afresh and returns an O_PATH descriptor of it,
// never following a link; with `fresh`, anything already there is refused.
UniqueFd make_dir_at(int dir_fd, const std::string& dir, const std::string& name, bool fresh,
                     bool* made) {
  *made = ::mkdirat(dir_fd, name.c_str(), 0700) == 0;
  const int err = errno;
  if (!*made && (err != EEXIST || fresh)) {
    if (err == EEXIST) {
      throw Error(dir + "/" + name + " already exists, and this prologue did not make it: it may "
                  "have been planted to redirect the job's volume. Remove it (and find out who "
                  "made it), then start the job again",
                  4);
    }
    throw Error(errno_text("cannot create " + dir + "/" + name, err));
  }
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_uid != 0) {
    throw Error(dir + "/" + name + " is not a directory of root's (a link, a file, or another "
                "user's directory): remove it (and find out who made it), then start the job again",
                4);
  }
  return fd;
}

bool has_volume(const Paths& paths) {
  auto mount = mount_at(paths.mountpoint);
  return (mount && mount->fstype == "fuse.scratchcrypt") || read_volume_header(paths.backing);
}

}  // namespace

int run_prologue(const cli::Args& args) {
  require_root("prologue");
  const Config config = load_config(args.get("config"));
  const std::string job = job_id(args);

  std::string user = args.get("uid", env("SLURM_JOB_UID"));
  if (user.empty()) user = env("SLURM_JOB_USER");
  if (user.empty()) throw Error("no job owner: pass --uid, or set SLURM_JOB_UID/SLURM_JOB_USER", 2);
  MountRequest request;
  request.owner.uid = cli::parse_user("uid", user);
  std::string group = args.get("gid", env("SLURM_JOB_GID"));
  if (group.empty()) {
    const passwd* pw = ::getpwuid(request.owner.uid);
    if (pw == nullptr) throw Error("user " + user + " has no primary group here: pass --gid", 2);
    request.owner.gid = pw->pw_gid;
  } else {
    request.owner.gid = cli::parse_group("gid", group);
  }
  request.owner.mode = 0700;

  const Paths paths = job_paths(config, job);
  const std::string mount_dir = parent_dir(paths.mountpoint);
  UniqueFd backing_root = open_root_dir("backing_root", config.backing_root, 0700);
  UniqueFd mount_root = open_root_dir(
      config.mode == VolumeMode::kNode ? "the directory of node_mount" : "mount_root", mount_dir, 0755);
  finish_abandoned_deletions(config);  // a node with an unfinished wipe must not take jobs
  if (auto existing = find_volume(paths.mountpoint);
      existing && existing->job == job && mount_at(paths.mountpoint) && !is_dead_mount(paths.mountpoint)) {
    std::printf("SCRATCH=%s\n", paths.mountpoint.c_str());  // already set up: idempotent
    return 0;
  }
  const std::string backing_name = paths.backing.substr(paths.backing.rfind('/') + 1);
  const std::string mount_name = paths.mountpoint.substr(paths.mountpoint.rfind('/') + 1);
  const bool per_job = config.mode == VolumeMode::kPerJob;
  if (has_volume(paths)) {
    // Node mode: the previous job's volume; per-job: a leftover of a crash.
    WipeOptions options;
    options.force = true;
    wipe_volume(config, read_volume_header(paths.backing) ? paths.backing : paths.mountpoint, options);
    if (per_job) ::unlinkat(mount_root.get(), mount_name.c_str(), AT_REMOVEDIR);  // its old mount point
  }
  // Made afresh by descriptor, never through a link; per-job, a mount point
  // that is already there is refused (node mode reuses node_mount).
  bool made_backing = false, made_mountpoint = false;
  UniqueFd backing_fd = make_dir_at(backing_root.get(), config.backing_root, backing_name, false, &made_backing);
  UniqueFd mountpoint_fd;
  try {
    mountpoint_fd = make_dir_at(mount_root.get(), mount_dir, mount_name, per_job, &made_mountpoint);
  } catch (const Error&) {
    if (made_backing) ::unlinkat(backing_root.get(), backing_name.c_str(), AT_REMOVEDIR);
    throw;
  }

  request.backing = resolved_path(config.backing_root) + "/" + backing_name;
  request.mountpoint = resolved_path(mount_dir) + "/" + mount_name;
  request.mountpoint_fd = mountpoint_fd.get();
  request.fs.size_limit = config.size_limit;
  std::string why;
  request.layout = effective_layout(config, &why);
  request.kernel_fs = config.block_fs;
  // The block layout's kernel file system has its own page cache.
  request.fs.writeback_cache = config.writeback_cache && request.layout == VolumeLayout::kFiles;
  log::info("job " + job + ": " + layout_name(request.layout) + " layout (" + why + ")");
  request.job = job;
  try {
    mount_volume(request);
  } catch (const Error&) {
    // Leave nothing behind that a later prologue or sweep would trip over.
    if (made_backing) ::unlinkat(backing_root.get(), backing_name.c_str(), AT_REMOVEDIR);
    if (made_mountpoint) ::unlinkat(mount_root.get(), mount_name.c_str(), AT_REMOVEDIR);
    throw;
  }
  update_metrics(config);
  std::printf("SCRATCH=%s\n", paths.mountpoint.c_str());
  return 0;
}

int run_epilogue(const cli::Args& args) {
  require_root("epilogue");
  const Config config = load_config(args.get("config"));
  const std::string job = job_id(args);
  const Paths paths = job_paths(config, job);
  finish_abandoned_deletions(config);  // an earlier failed wipe also drains the node
  if (!has_volume(paths)) {
    std::fprintf(stderr, "scratchcrypt: job %s has no volume on this node; nothing to wipe\n", job.c_str());
  } else {
    WipeOptions options;
    options.force = true;  // the job is over: whatever it left running is cut off
    options.job = job;
    wipe_volume(config, read_volume_header(paths.backing) ? paths.backing : paths.mountpoint, options);
  }
  if (config.mode == VolumeMode::kPerJob) ::rmdir(paths.mountpoint.c_str());
  update_metrics(config);
  return 0;
}

int run_config(const cli::Args& args) {
  const Config config = load_config(args.get("config"));
  for (const auto& [key, value] : config_items(config)) {
    if (args.positional().empty()) {
      std::printf("%s =%s%s\n", key.c_str(), value.empty() ? "" : " ", value.c_str());
    } else if (args.positional()[0] == key) {
      std::printf("%s\n", value.c_str());
      return 0;
    }
  }
  if (!args.positional().empty()) {
    throw Error("unknown setting '" + args.positional()[0] + "' (see `scratchcrypt config`)", 2);
  }
  if (args.positional().empty()) {
    std::string why;
    const char* layout = layout_name(effective_layout(config, &why));
    std::fflush(stdout);
    std::fprintf(stderr, "note: new volumes use the %s layout (%s)\n", layout, why.c_str());
  }
  if (on_ext4_without_journal(config.backing_root)) {
    std::fflush(stdout);
    std::fprintf(stderr,
                 "warning: backing_root %s is on an ext4 file system without a journal: "
                 "creating files stays slow for minutes after a large wipe; use ext4 with its "
                 "journal, or xfs (docs/OPERATIONS.md)\n",
                 config.backing_root.c_str());
  }
  return 0;
}

}  // namespace scratchcrypt
