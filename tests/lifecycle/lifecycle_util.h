// Support for the key-lifecycle and wipe suites: a private node layout
// (configuration, backing_root, mount_root, record log and volume registry
// in one temporary directory), volumes made through the real binary, a
// small JSON reader for the wipe records and `status --json`, and a few file
// and key helpers. Built on tests/fs/mount_fixture.h (run, as_user, TempDir,
// keys, and the process and mount helpers).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/fs/mount_fixture.h"

namespace lctest {

using sctest::is_mountpoint;
using sctest::lock_holder;
using sctest::process_gone;
using sctest::RunResult;
using sctest::wait_gone;

// ---- JSON (enough for our records: objects, arrays, strings, numbers, bools, null)
struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject } type = kNull;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> fields;

  bool has(const std::string& key) const { return type == kObject && fields.count(key) != 0; }
  const Json& operator[](const std::string& key) const;
  std::string str(const std::string& key) const;    // "" when absent or not a string
  double num(const std::string& key) const;         // -1 when absent or not a number
};
// Parses one JSON text; nullopt (and *error) when malformed.
std::optional<Json> parse_json(const std::string& text, std::string* error = nullptr);

// ---- files and processes
std::string slurp(const std::string& path, int* err = nullptr);
bool spit(const std::string& path, const std::string& data, mode_t mode = 0644);
bool exists(const std::string& path);
bool contains(const std::string& haystack, const std::string& needle);
// Every regular file under `dir` (not crossing mounts), recursively.
std::vector<std::string> files_under(const std::string& dir);
// is_mountpoint, lock_holder, process_gone and wait_gone come from
// tests/fs/mount_fixture.h (see the using-declarations above).
// The serial of root's "user" key scratchcrypt:<id>, or -1.
long key_serial(const std::string& volume_id);
// Bytes of the key, read as root through the keyring; empty when absent.
std::string key_bytes(const std::string& volume_id);
// `scratchcrypt ARGS` with extra environment variables (KEY=VALUE).
RunResult run_env(const std::vector<std::string>& args, const std::vector<std::string>& env,
                  const std::vector<int>& keep_fds = {}, int timeout_s = 60);
std::string hex(const std::string& bytes);

// ---- a private node: config, roots, log and registry in one temp dir
class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates <backing_root>/<name> and <mount_root>/<name> and mounts a new
  // volume there; `key` (64 bytes) goes through --key-fd when given.
  // Returns the volume id ("" and a test failure when mounting failed).
  std::string make_volume(const std::string& name, const std::vector<uint8_t>& key = {},
                          const std::vector<std::string>& extra = {});
  std::string backing(const std::string& name) const { return backing_root_ + "/" + name; }
  std::string mnt(const std::string& name) const { return mount_root_ + "/" + name; }
  // scratchcrypt ARGS (the config comes from $SCRATCHCRYPT_CONFIG).
  RunResult sc(const std::vector<std::string>& args, int timeout_s = 60);
  // The wipe records written so far, parsed (a malformed line fails the test).
  std::vector<Json> records();
  // The record of `volume_id`, waiting up to `timeout` for it to appear.
  std::optional<Json> wait_record(const std::string& volume_id, std::chrono::milliseconds timeout);
  // `status --json`'s entry for `volume_id`.
  std::optional<Json> status_of(const std::string& volume_id);
  // Remembers a volume id so that teardown drops its key whatever happens.
  void track(const std::string& id) { ids_.push_back(id); }

  std::unique_ptr<sctest::TempDir> dir_;
  std::string root_, backing_root_, mount_root_, record_log_, config_, run_dir_;
  std::vector<std::string> ids_;
};

}  // namespace lctest
