#include "tests/fs/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "crypto/keyring.h"

namespace sctest {

namespace {

using Clock = std::chrono::steady_clock;

// Every child of this process is reaped here: statuses of the children we
// wait for are kept until their waiter takes them; orphaned volume daemons
// (we are their subreaper) are simply collected.
std::mutex g_reap_mu;
std::map<pid_t, int> g_statuses;

void become_subreaper() {
  static std::once_flag once;
  std::call_once(once, [] { ::prctl(PR_SET_CHILD_SUBREAPER, 1); });
}

void collect_children() {
  std::lock_guard lock(g_reap_mu);
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    g_statuses[pid] = status;
  }
  // Orphans nobody waits for would pile up; keep the map small.
  if (g_statuses.size() > 4096) g_statuses.clear();
}

// Waits for `pid` (a child); returns its wait status, or -1 on timeout.
int wait_child(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    collect_children();
    {
      std::lock_guard lock(g_reap_mu);
      auto it = g_statuses.find(pid);
      if (it != g_statuses.end()) {
        int status = it->second;
        g_statuses.erase(it);
        return status;
      }
    }
    if (Clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// In a forked child: close every descriptor above 2 except `keep`.
void close_other_fds(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int from = 3;
  for (int fd : keep) {
    if (fd < 3) continue;
    if (static_cast<unsigned int>(fd) > from) ::close_range(from, static_cast<unsigned>(fd) - 1, 0);
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    from = static_cast<unsigned int>(fd) + 1;
  }
  ::close_range(from, ~0U, 0);
}

// `path` as /proc/self/mountinfo writes it: space, tab, newline and
// backslash as \ooo.
std::string mountinfo_escaped(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char octal[8];
      std::snprintf(octal, sizeof octal, "\\%03o", static_cast<unsigned char>(c));
      out += octal;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string scratchcrypt_bin() {
  const char* bin = std::getenv("SCRATCHCRYPT_BIN");
  if (bin == nullptr || *bin == '\0') {
    ADD_FAILURE() << "SCRATCHCRYPT_BIN is not set (run through `make fs-test`)";
    return "/nonexistent/scratchcrypt";
  }
  return bin;
}

void reap_orphans() {
  become_subreaper();
  collect_children();
}

bool process_gone(pid_t pid) {
  reap_orphans();
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         (line[paren + 2] == 'Z' || line[paren + 2] == 'X');
}

bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!process_gone(pid)) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

pid_t lock_holder(const std::string& backing) {
  int fd = ::open((backing + "/.scratchcrypt-volume").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  pid_t pid = -1;
  if (::fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) pid = probe.l_pid;
  ::close(fd);
  return pid;
}

bool is_mountpoint(const std::string& path) {
  const std::string wanted = mountinfo_escaped(path);
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint;
    fields >> id >> parent >> devno >> root >> mountpoint;
    if (mountpoint == wanted) return true;
  }
  return false;
}

std::string source_dir() {
  const char* src = std::getenv("SCRATCHCRYPT_SRC");
  if (src != nullptr && *src != '\0') return src;
  std::string bin = scratchcrypt_bin();
  auto slash = bin.rfind('/');
  std::string dir = slash == std::string::npos ? "." : bin.substr(0, slash);
  slash = dir.rfind('/');
  return slash == std::string::npos ? "." : dir.substr(0, slash);
}

RunResult run(const std::vector<std::string>& argv, const std::vector<int>& keep_fds,
              int timeout_s, const std::string* input) {
  become_subreaper();
  RunResult result;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return result;
  int in[2] = {-1, -1};
  if (input != nullptr) {
    if (::pipe2(in, O_CLOEXEC) != 0) return result;
    ::fcntl(in[1], F_SETPIPE_SZ, static_cast<int>(std::max<size_t>(input->size() + 1, 4096)));
    if (::write(in[1], input->data(), input->size()) != static_cast<ssize_t>(input->size())) {
      result.output = "could not pass stdin";
    }
    ::close(in[1]);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    if (in[0] >= 0) ::close(in[0]);
    return result;
  }
  if (pid == 0) {
    int null = in[0] >= 0 ? in[0] : ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    close_other_fds(keep_fds);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  if (in[0] >= 0) ::close(in[0]);
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int status = -1;
  bool exited = false, eof = false;
  Clock::time_point exit_time;
  while (!eof) {
    struct pollfd pfd = {out[0], POLLIN, 0};
    ::poll(&pfd, 1, 5);
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n > 0) {
        result.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      break;
    }
    if (!exited) {
      collect_children();
      std::lock_guard lock(g_reap_mu);
      auto it = g_statuses.find(pid);
      if (it != g_statuses.end()) {
        status = it->second;
        g_statuses.erase(it);
        exited = true;
        exit_time = Clock::now();
      }
    }
    // A daemon may hold the pipe a moment after its parent returned.
    if (exited && Clock::now() - exit_time > std::chrono::milliseconds(500)) break;
    if (!exited && Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      status = wait_child(pid, Clock::now() + std::chrono::seconds(10));
      result.output += "\n[killed after " + std::to_string(timeout_s) + " s]";
      exited = true;
      break;
    }
  }
  ::close(out[0]);
  if (!exited) status = wait_child(pid, deadline + std::chrono::seconds(10));
  result.exit_code = status == -1 ? -1 : exit_code_of(status);
  return result;
}

RunResult run_scratchcrypt(const std::vector<std::string>& args, const std::vector<int>& keep_fds,
                           int timeout_s) {
  std::vector<std::string> argv = {scratchcrypt_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, keep_fds, timeout_s);
}

AsUser as_user(uid_t uid, gid_t gid, const std::function<long()>& fn,
               const std::vector<gid_t>& groups) {
  become_subreaper();
  AsUser result;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    result.err = errno;
    return result;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    AsUser r;
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 ||
        ::setuid(uid) != 0) {
      r.value = -2;
      r.err = errno;
    } else {
      errno = 0;
      r.value = fn();
      r.err = errno;
    }
    ssize_t ignored = ::write(p[1], &r, sizeof r);
    (void)ignored;
    _exit(0);
  }
  ::close(p[1]);
  if (pid < 0) {
    result.err = errno;
    ::close(p[0]);
    return result;
  }
  AsUser r;
  ssize_t n = ::read(p[0], &r, sizeof r);
  ::close(p[0]);
  wait_child(pid, Clock::now() + std::chrono::seconds(60));
  if (n != static_cast<ssize_t>(sizeof r)) {
    result.value = -3;
    result.err = EIO;
    return result;
  }
  return r;
}

namespace {

// Removes `name` in `dirfd`, descending by descriptor: backing trees of deep
// paths are longer than PATH_MAX, which nftw cannot walk. Never crosses into
// another file system (a mount that could not be taken down).
void remove_at(int dirfd, const char* name, dev_t dev) {
  if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
  int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_dev != dev) {
    ::close(fd);
    return;
  }
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  }
  for (const auto& child : names) remove_at(::dirfd(dir), child.c_str(), dev);
  ::closedir(dir);
  ::unlinkat(dirfd, name, AT_REMOVEDIR);
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (path.empty() || ::lstat(path.c_str(), &st) != 0) return;
  remove_at(AT_FDCWD, path.c_str(), st.st_dev);
}

TempDir::TempDir(const std::string& tag, const std::string& base) {
  std::string tmpl = base + "/scratchcrypt-test-" + tag + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = tmpl;
  ::chmod(path_.c_str(), 0755);  // test users must reach the mount inside
}

TempDir::~TempDir() {
  if (!path_.empty()) remove_tree(path_);
}

std::vector<uint8_t> test_key(uint8_t seed) {
  std::vector<uint8_t> key(64);
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(seed * 131 + i * 7 + 1);
  return key;
}

int key_pipe(const std::vector<uint8_t>& key) {
  int p[2];
  if (::pipe(p) != 0) return -1;
  ssize_t n = ::write(p[1], key.data(), key.size());
  ::close(p[1]);
  if (n != static_cast<ssize_t>(key.size())) {
    ::close(p[0]);
    return -1;
  }
  ::fcntl(p[0], F_SETFD, FD_CLOEXEC);  // run() clears it in the child it passes it to
  return p[0];
}

LoopDisk::LoopDisk(const std::string& image, const std::string& dir, int mib,
                   const std::vector<std::string>& mkfs_args)
    : image_(image), dir_(dir) {
  int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return;
  const bool sized = ::ftruncate(fd, static_cast<off_t>(mib) << 20) == 0;
  ::close(fd);
  std::vector<std::string> argv = {"/sbin/mkfs.ext4", "-F", "-q"};
  argv.insert(argv.end(), mkfs_args.begin(), mkfs_args.end());
  argv.push_back(image);
  made_ = sized && ::mkdir(dir.c_str(), 0755) == 0 && run(argv).exit_code == 0;
}

LoopDisk::~LoopDisk() {
  if (mounted_) run({"/usr/bin/umount", "-l", dir_});
}

bool LoopDisk::available() {
  return ::access("/sbin/mkfs.ext4", X_OK) == 0 && ::access("/dev/loop-control", F_OK) == 0;
}

bool LoopDisk::mount() {
  RunResult r = run({"/usr/bin/mount", "-o", "loop", image_, dir_});
  EXPECT_EQ(0, r.exit_code) << "mount -o loop: " << r.output;
  mounted_ = r.exit_code == 0;
  return mounted_;
}

bool LoopDisk::umount() {
  RunResult r = run({"/usr/bin/umount", dir_});
  EXPECT_EQ(0, r.exit_code) << "umount: " << r.output;
  if (r.exit_code == 0) mounted_ = false;
  return r.exit_code == 0;
}

std::string LoopDisk::bytes() const {
  ::sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3" << std::flush;  // best effort
  return read_file(image_);
}

Mount::Mount(const MountOptions& options)
    : dir_("vol", options.base_dir.empty() ? "/tmp" : options.base_dir), options_(options) {
  if (dir_.path().empty()) return;
  backing_ = dir_.path() + "/backing";
  mnt_ = dir_.path() + "/mnt";
  ::mkdir(backing_.c_str(), 0700);
  ::mkdir(mnt_.c_str(), 0755);
  mount_result_ = do_mount(options_.extra_args);
  mounted_ = mount_result_.exit_code == 0;
  volume_id_ = volume_id();
}

Mount::~Mount() { teardown(); }

bool block_layout() {
  const char* layout = std::getenv("SCRATCHCRYPT_TEST_LAYOUT");
  return layout != nullptr && std::string(layout) == "block";
}

bool drop_caches() {
  ::sync();
  std::ofstream drop("/proc/sys/vm/drop_caches");
  drop << "3" << std::endl;
  return static_cast<bool>(drop);
}

std::vector<std::string> layout_args() {
  // 1 GiB: room for every test, and mkfs stays instant (the image is sparse).
  if (block_layout()) return {"--layout", "block", "--size-limit", "1G"};
  return {};
}

RunResult Mount::do_mount(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"mount"};
  if (block_layout()) {
    argv.insert(argv.end(), {"--layout", "block"});
    if (std::find(args.begin(), args.end(), "--size-limit") == args.end()) {
      argv.insert(argv.end(), {"--size-limit", "1G"});
    }
  }
  argv.insert(argv.end(), args.begin(), args.end());
  int fd = -1;
  const bool recover = std::find(args.begin(), args.end(), "--recover") != args.end();
  if (!options_.key.empty() && !recover) {
    fd = key_pipe(options_.key);
    argv.push_back("--key-fd");
    argv.push_back(std::to_string(fd));
  }
  argv.push_back(backing_);
  argv.push_back(mnt_);
  // The daemon inherits the environment of the command that starts it.
  if (!options_.fault_file.empty()) ::setenv("SCRATCHCRYPT_FAULT_FILE", options_.fault_file.c_str(), 1);
  RunResult r = options_.trace_file.empty()
                    ? run_scratchcrypt(argv, fd >= 0 ? std::vector<int>{fd} : std::vector<int>{})
                    : start_traced_daemon(argv, fd);
  if (!options_.fault_file.empty()) ::unsetenv("SCRATCHCRYPT_FAULT_FILE");
  if (fd >= 0) ::close(fd);
  return r;
}

// `scratchcrypt mount -f --debug ...` as our child, output to the trace
// file, `key_fd` (if any) inherited; "succeeds" once the mount point is
// mounted (teardown stops it).
RunResult Mount::start_traced_daemon(std::vector<std::string> argv, int key_fd) {
  argv.insert(argv.begin() + 1, {"-f", "--debug"});
  argv.insert(argv.begin(), scratchcrypt_bin());
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(options_.trace_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (key_fd >= 0) ::fcntl(key_fd, F_SETFD, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  RunResult r;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (pid > 0 && !is_mountpoint(mnt_) && !process_gone(pid) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.exit_code = pid > 0 && is_mountpoint(mnt_) ? 0 : 1;
  std::ifstream trace(options_.trace_file);
  if (r.exit_code != 0) r.output.assign(std::istreambuf_iterator<char>(trace), {});
  return r;
}

std::string Mount::volume_id() const {
  std::ifstream in(backing_ + "/.scratchcrypt-volume");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("id ", 0) == 0) return line.substr(3);
  }
  return volume_id_;
}

pid_t Mount::daemon_pid() const { return lock_holder(backing_); }

bool Mount::umount() {
  RunResult r = run_scratchcrypt({"umount", mnt_}, {}, 30);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "scratchcrypt umount " << mnt_ << " failed (" << r.exit_code
                  << "): " << r.output;
    return false;
  }
  mounted_ = false;
  return true;
}

RunResult Mount::mount_again(const std::vector<std::string>& args) {
  RunResult r = do_mount(args);
  if (r.exit_code == 0) mounted_ = true;
  return r;
}

// Block layout: the kernel file system is unmounted and mounted again on the
// same loop device (held open meanwhile, or it would detach itself), so
// everything is read back from the encrypted image. A block-layout volume
// itself is never remounted.
bool Mount::remount_kernel_fs() {
  std::ifstream record(std::string(std::getenv("SCRATCHCRYPT_RUN_DIR") ? std::getenv("SCRATCHCRYPT_RUN_DIR")
                                                                      : "/run/scratchcrypt/volumes") +
                       "/" + volume_id() + ".json");
  std::string json((std::istreambuf_iterator<char>(record)), {});
  const std::string key = "\"loop\": \"";
  const auto at = json.find(key);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no loop device in the registry record of " << volume_id();
    return false;
  }
  const std::string loop = json.substr(at + key.size(), json.find('"', at + key.size()) - at - key.size());
  const int hold = ::open(loop.c_str(), O_RDONLY | O_CLOEXEC);
  bool ok = hold >= 0 && ::umount2(mnt_.c_str(), 0) == 0 &&
            ::mount(loop.c_str(), mnt_.c_str(), "ext4", MS_NODEV | MS_NOSUID | MS_NOATIME,
                    "discard,errors=remount-ro,minixdf") == 0;
  if (!ok) ADD_FAILURE() << "remount of the file system on " << loop << ": " << std::strerror(errno);
  if (hold >= 0) ::close(hold);
  return ok;
}

bool Mount::remount() {
  if (block_layout()) return remount_kernel_fs();
  if (!umount()) return false;
  RunResult r = mount_again(options_.key.empty() ? std::vector<std::string>{"--recover"}
                                                 : std::vector<std::string>{});
  if (r.exit_code != 0) {
    ADD_FAILURE() << "remount of " << backing_ << " failed (" << r.exit_code << "): " << r.output;
    return false;
  }
  return true;
}

void Mount::teardown() {
  if (mnt_.empty()) return;
  if (is_mountpoint(mnt_)) {
    RunResult r = run_scratchcrypt({"umount", mnt_}, {}, 30);
    if (r.exit_code != 0 || is_mountpoint(mnt_)) {
      run({"/usr/bin/umount", "-l", mnt_});
      if (is_mountpoint(mnt_)) run({"/usr/bin/fusermount3", "-uz", mnt_});
    }
  }
  // A daemon kept alive by a lazily detached mount (or hung) must not
  // outlive the test.
  pid_t pid = lock_holder(backing_);
  if (pid > 0 && !wait_gone(pid, std::chrono::seconds(3))) {
    ::kill(pid, SIGKILL);
    wait_gone(pid, std::chrono::seconds(3));
  }
  collect_children();
  const std::string id = volume_id();
  if (!id.empty()) scratchcrypt::keyring::remove(id);
  mounted_ = false;
}

void MountTest::SetUp() {
  std::vector<std::string> args = {"--mode", "0777"};
  for (const auto& a : mount_args()) args.push_back(a);
  if (block_layout() && std::find(args.begin(), args.end(), "--writeback-cache") != args.end()) {
    GTEST_SKIP() << "--writeback-cache is a files-layout mode";
  }
  m_ = std::make_unique<Mount>(MountOptions{args, {}});
  ASSERT_TRUE(m_->ok()) << "mount failed (" << m_->mount_result().exit_code
                        << "): " << m_->mount_result().output;
}

std::string cache_mode_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "WritebackCache" : "WriteThrough";
}

std::string read_file(const std::string& path, int* err) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = errno;
    return out;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (err) *err = errno;
      ::close(fd);
      return out;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (err) *err = 0;
  return out;
}

bool write_file(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return ::close(fd) == 0;
}

std::string pattern(size_t length, uint64_t seed) {
  std::string out(length, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
  for (size_t i = 0; i < length; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

long long blocks_of(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_blocks);
}

namespace {
thread_local ino_t g_wanted_ino;
thread_local std::string* g_found;
}  // namespace

std::string find_backing_by_ino(const std::string& backing, ino_t ino) {
  std::string found;
  g_wanted_ino = ino;
  g_found = &found;
  ::nftw(
      backing.c_str(),
      [](const char* fpath, const struct stat* st, int, struct FTW*) {
        if (st->st_ino == g_wanted_ino) {
          *g_found = fpath;
          return 1;
        }
        return 0;
      },
      64, FTW_PHYS | FTW_MOUNT);
  return found;
}

std::string backing_of(const Mount& m, const std::string& mount_path) {
  struct stat st;
  if (::lstat(mount_path.c_str(), &st) != 0) return "";
  return find_backing_by_ino(m.backing(), st.st_ino);
}

}  // namespace sctest
