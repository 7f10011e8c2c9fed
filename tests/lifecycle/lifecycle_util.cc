#include "tests/lifecycle/lifecycle_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/keyring.h"

namespace lctest {

// ---------------------------------------------------------------- JSON

namespace {

const Json kNullJson;

struct Parser {
  const std::string& s;
  size_t i = 0;
  std::string error;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool fail(const std::string& why) {
    if (error.empty()) error = why + " at offset " + std::to_string(i);
    return false;
  }
  bool literal(const char* word) {
    size_t n = std::strlen(word);
    if (s.compare(i, n, word) != 0) return fail(std::string("expected ") + word);
    i += n;
    return true;
  }
  bool string(std::string* out) {
    if (i >= s.size() || s[i] != '"') return fail("expected a string");
    ++i;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (i >= s.size()) return fail("truncated escape");
      char e = s[i++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          if (i + 4 > s.size()) return fail("truncated \\u escape");
          unsigned v = static_cast<unsigned>(std::strtoul(s.substr(i, 4).c_str(), nullptr, 16));
          i += 4;
          if (v < 0x80) {
            out->push_back(static_cast<char>(v));
          } else if (v < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (v >> 6)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (v >> 12)));
            out->push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
          }
          break;
        }
        default: return fail("bad escape");
      }
    }
    if (i >= s.size()) return fail("unterminated string");
    ++i;
    return true;
  }
  bool value(Json* out) {
    ws();
    if (i >= s.size()) return fail("unexpected end");
    char c = s[i];
    if (c == '{') {
      out->type = Json::kObject;
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') {
        ++i;
        return true;
      }
      for (;;) {
        ws();
        std::string key;
        if (!string(&key)) return false;
        ws();
        if (i >= s.size() || s[i] != ':') return fail("expected ':'");
        ++i;
        Json v;
        if (!value(&v)) return false;
        if (out->fields.count(key)) return fail("duplicate key " + key);
        out->fields[key] = std::move(v);
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == '}') {
          ++i;
          return true;
        }
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      out->type = Json::kArray;
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
        return true;
      }
      for (;;) {
        Json v;
        if (!value(&v)) return false;
        out->items.push_back(std::move(v));
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == ']') {
          ++i;
          return true;
        }
        return fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      out->type = Json::kString;
      return string(&out->text);
    }
    if (c == 't') {
      out->type = Json::kBool;
      out->boolean = true;
      return literal("true");
    }
    if (c == 'f') {
      out->type = Json::kBool;
      return literal("false");
    }
    if (c == 'n') return literal("null");
    const char* begin = s.c_str() + i;
    char* end = nullptr;
    double v = std::strtod(begin, &end);
    if (end == begin) return fail("unexpected character");
    out->type = Json::kNumber;
    out->number = v;
    i += static_cast<size_t>(end - begin);
    return true;
  }
};

}  // namespace

const Json& Json::operator[](const std::string& key) const {
  if (type != kObject) return kNullJson;
  auto it = fields.find(key);
  return it == fields.end() ? kNullJson : it->second;
}

std::string Json::str(const std::string& key) const {
  const Json& v = (*this)[key];
  return v.type == kString ? v.text : "";
}

double Json::num(const std::string& key) const {
  const Json& v = (*this)[key];
  return v.type == kNumber ? v.number : -1;
}

std::optional<Json> parse_json(const std::string& text, std::string* error) {
  Parser p{text};
  Json out;
  bool ok = p.value(&out);
  if (ok) {
    p.ws();
    if (p.i != text.size()) ok = p.fail("trailing characters");
  }
  if (!ok) {
    if (error) *error = p.error;
    return std::nullopt;
  }
  return out;
}

// ---------------------------------------------------------------- files, processes

std::string slurp(const std::string& path, int* err) { return sctest::read_file(path, err); }

bool spit(const std::string& path, const std::string& data, mode_t mode) {
  return sctest::write_file(path, data, mode);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return !needle.empty() && haystack.find(needle) != std::string::npos;
}

namespace {

void walk(const std::string& dir, dev_t dev, std::vector<std::string>* out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    const std::string path = dir + "/" + e->d_name;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || st.st_dev != dev) continue;
    if (S_ISDIR(st.st_mode)) {
      walk(path, dev, out);
    } else if (S_ISREG(st.st_mode)) {
      out->push_back(path);
    }
  }
  ::closedir(d);
}

struct MountLine {
  std::string mountpoint, fstype;
  unsigned minor = 0;
};

std::string unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() + 1) {
      out.push_back(static_cast<char>(std::strtol(field.substr(i + 1, 3).c_str(), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

std::vector<MountLine> mounts() {
  std::vector<MountLine> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, mp, opts, w;
    f >> id >> parent >> devno >> root >> mp >> opts;
    while (f >> w && w != "-") {
    }
    MountLine m;
    f >> m.fstype;
    m.mountpoint = unescape(mp);
    unsigned major = 0;
    std::sscanf(devno.c_str(), "%u:%u", &major, &m.minor);
    out.push_back(m);
  }
  return out;
}

bool under(const std::string& path, const std::string& root) {
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

long keyctl(int op, unsigned long a2, unsigned long a3 = 0, unsigned long a4 = 0,
            unsigned long a5 = 0) {
  return ::syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

// Whether this process has children that are still running.
bool has_children() {
  sctest::reap_orphans();
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  bool any = false;
  while (dirent* t = ::readdir(tasks)) {
    if (t->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + t->d_name + "/children");
    pid_t pid;
    while (in >> pid) any = any || !process_gone(pid);
  }
  ::closedir(tasks);
  return any;
}

}  // namespace

std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return out;
  walk(dir, st.st_dev, &out);
  return out;
}

long key_serial(const std::string& volume_id) {
  const std::string desc = "scratchcrypt:" + volume_id;
  long serial = keyctl(KEYCTL_SEARCH, static_cast<unsigned long>(KEY_SPEC_USER_KEYRING),
                       reinterpret_cast<unsigned long>("user"),
                       reinterpret_cast<unsigned long>(desc.c_str()), 0);
  return serial < 0 ? -1 : serial;
}

std::string key_bytes(const std::string& volume_id) {
  long serial = key_serial(volume_id);
  if (serial < 0) return "";
  std::string buf(256, '\0');
  long n = keyctl(KEYCTL_READ, static_cast<unsigned long>(serial),
                  reinterpret_cast<unsigned long>(buf.data()), buf.size());
  if (n < 0) return "";
  buf.resize(static_cast<size_t>(std::min<long>(n, 256)));
  return buf;
}

RunResult run_env(const std::vector<std::string>& args, const std::vector<std::string>& env,
                  const std::vector<int>& keep_fds, int timeout_s) {
  std::vector<std::string> argv = {"/usr/bin/env"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(sctest::scratchcrypt_bin());
  argv.insert(argv.end(), args.begin(), args.end());
  return sctest::run(argv, keep_fds, timeout_s);
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// ---------------------------------------------------------------- NodeTest

void NodeTest::SetUp() {
  sctest::reap_orphans();
  dir_ = std::make_unique<sctest::TempDir>("lc");
  root_ = dir_->path();
  ASSERT_FALSE(root_.empty());
  backing_root_ = root_ + "/backing";
  mount_root_ = root_ + "/scratch";
  record_log_ = root_ + "/log/wipe.jsonl";
  config_ = root_ + "/scratchcrypt.conf";
  run_dir_ = root_ + "/run";
  ::mkdir(backing_root_.c_str(), 0700);
  ::mkdir(mount_root_.c_str(), 0755);
  ::mkdir(run_dir_.c_str(), 0700);
  ASSERT_TRUE(spit(config_, "# lifecycle test node\nbacking_root = " + backing_root_ +
                                "\nmount_root = " + mount_root_ + "\nrecord_log = " + record_log_ +
                                "\n"));
  ::setenv("SCRATCHCRYPT_CONFIG", config_.c_str(), 1);
  ::setenv("SCRATCHCRYPT_RUN_DIR", run_dir_.c_str(), 1);
}

void NodeTest::TearDown() {
  if (root_.empty()) return;
  // Volume ids: tracked ones and whatever headers are still there.
  std::vector<std::string> ids = ids_;
  std::vector<std::string> backings;
  if (DIR* d = ::opendir(backing_root_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        backings.push_back(backing_root_ + "/" + e->d_name);
      }
    }
    ::closedir(d);
  }
  for (const auto& b : backings) {
    std::ifstream in(b + "/.scratchcrypt-volume");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("id ", 0) == 0) ids.push_back(line.substr(3));
    }
  }
  // FUSE mounts under our root: cut off and detach (deepest first).
  auto ms = mounts();
  std::sort(ms.begin(), ms.end(),
            [](const MountLine& a, const MountLine& b) { return a.mountpoint.size() > b.mountpoint.size(); });
  for (const auto& m : ms) {
    if (!under(m.mountpoint, root_) || m.fstype.rfind("fuse", 0) != 0) continue;
    std::ofstream abort("/sys/fs/fuse/connections/" + std::to_string(m.minor) + "/abort");
    abort << "1" << std::flush;
    ::umount2(m.mountpoint.c_str(), MNT_DETACH);
  }
  for (const auto& b : backings) {
    pid_t pid = lock_holder(b);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      wait_gone(pid, std::chrono::seconds(3));
    }
  }
  // Background deletions (wipe without --wait, epilogue) run as our
  // children (we are the subreaper) and append their record when done: let
  // them finish, or they recreate the log after the directory is gone.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (has_children() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& id : ids) {
    try {
      scratchcrypt::keyring::remove(id);
    } catch (...) {
    }
  }
  // Other mounts (loop file systems of the disk tests).
  for (const auto& m : mounts()) {
    if (under(m.mountpoint, root_)) ::umount2(m.mountpoint.c_str(), MNT_DETACH);
  }
  sctest::reap_orphans();
  ::unsetenv("SCRATCHCRYPT_CONFIG");
  ::unsetenv("SCRATCHCRYPT_RUN_DIR");
  dir_.reset();
}

std::string NodeTest::make_volume(const std::string& name, const std::vector<uint8_t>& key,
                                  const std::vector<std::string>& extra) {
  const std::string b = backing(name), m = mnt(name);
  ::mkdir(b.c_str(), 0700);
  ::mkdir(m.c_str(), 0755);
  std::vector<std::string> args = {"mount"};
  args.insert(args.end(), extra.begin(), extra.end());
  int fd = -1;
  if (!key.empty()) {
    fd = sctest::key_pipe(key);
    args.push_back("--key-fd");
    args.push_back(std::to_string(fd));
  }
  args.push_back(b);
  args.push_back(m);
  RunResult r = sctest::run_scratchcrypt(args, fd >= 0 ? std::vector<int>{fd} : std::vector<int>{});
  if (fd >= 0) ::close(fd);
  std::string id;
  std::ifstream in(b + "/.scratchcrypt-volume");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("id ", 0) == 0) id = line.substr(3);
  }
  if (!id.empty()) track(id);
  if (r.exit_code != 0 || id.empty()) {
    ADD_FAILURE() << "mount " << b << " " << m << " failed (" << r.exit_code << "): " << r.output;
    return "";
  }
  return id;
}

RunResult NodeTest::sc(const std::vector<std::string>& args, int timeout_s) {
  return sctest::run_scratchcrypt(args, {}, timeout_s);
}

std::vector<Json> NodeTest::records() {
  std::vector<Json> out;
  std::istringstream in(slurp(record_log_));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::string error;
    auto j = parse_json(line, &error);
    if (!j || j->type != Json::kObject) {
      ADD_FAILURE() << "record log line is not a JSON object (" << error << "): " << line;
      continue;
    }
    out.push_back(std::move(*j));
  }
  return out;
}

std::optional<Json> NodeTest::wait_record(const std::string& volume_id,
                                          std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    sctest::reap_orphans();
    for (auto& r : records()) {
      if (r.str("volume") == volume_id) return r;
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<Json> NodeTest::status_of(const std::string& volume_id) {
  RunResult r = sc({"status", "--json"});
  EXPECT_EQ(0, r.exit_code) << r.output;
  std::string error;
  auto j = parse_json(r.output, &error);
  EXPECT_TRUE(j.has_value()) << "status --json is not JSON (" << error << "): " << r.output;
  if (!j) return std::nullopt;
  for (const auto& v : (*j)["volumes"].items) {
    if (v.str("id") == volume_id) return v;
  }
  return std::nullopt;
}

}  // namespace lctest
