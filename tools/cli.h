// Command-line parsing shared by every subcommand: long options with
// values (--opt VALUE or --opt=VALUE), flags, positional arguments, and
// --help generated from the same table, so help and parser cannot drift.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace scratchcrypt::cli {

struct Option {
  std::string name;        // "key-fd" for --key-fd; one letter allows -f too
  std::string value_name;  // empty for a flag
  std::string help;
};

struct Command {
  std::string name;
  std::string synopsis;     // "[options] BACKING MOUNTPOINT"
  std::string summary;      // one line for the overview
  std::string description;  // paragraphs for --help
  std::vector<Option> options;
  size_t min_positional = 0;
  size_t max_positional = 0;
};

class Args {
 public:
  // Parses argv (after the subcommand name). Throws Error (exit 2) with a
  // message that names the bad argument and points at --help.
  static Args parse(const Command& command, const std::vector<std::string>& argv);

  bool help() const { return help_; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  bool help_ = false;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

std::string help_text(const Command& command);

// "10G", "512M", "1T", "4096", "0": bytes. Throws Error on anything else.
uint64_t parse_size(const std::string& option, const std::string& text);
// A non-negative integer; throws Error naming the option.
uint64_t parse_number(const std::string& option, const std::string& text);
// A user name or uid; a group name or gid.
uid_t parse_user(const std::string& option, const std::string& text);
gid_t parse_group(const std::string& option, const std::string& text);
// An octal mode such as 0700.
mode_t parse_mode(const std::string& option, const std::string& text);

}  // namespace scratchcrypt::cli
