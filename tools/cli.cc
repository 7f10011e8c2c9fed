#include "tools/cli.h"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "fuse/error.h"

namespace scratchcrypt::cli {

namespace {

[[noreturn]] void usage_error(const Command& command, const std::string& message) {
  throw Error("scratchcrypt " + command.name + ": " + message + "\nsee `scratchcrypt " +
                  command.name + " --help`",
              2);
}

const Option* find_option(const Command& command, const std::string& name) {
  for (const auto& option : command.options) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

}  // namespace

Args Args::parse(const Command& command, const std::vector<std::string>& argv) {
  Args args;
  bool options_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (options_done || word.size() < 2 || word[0] != '-') {
      args.positional_.push_back(word);
      continue;
    }
    if (word == "--") {
      options_done = true;
      continue;
    }
    if (word == "--help" || word == "-h") {
      args.help_ = true;
      continue;
    }
    std::string name, value;
    bool inline_value = false;
    if (word.rfind("--", 0) == 0) {
      name = word.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
    } else if (word.size() == 2) {
      name = word.substr(1);
    } else {
      usage_error(command, "unknown option " + word);
    }
    const Option* option = find_option(command, name);
    if (option == nullptr) usage_error(command, "unknown option " + word);
    if (option->value_name.empty()) {
      if (inline_value) usage_error(command, "--" + name + " takes no value");
      args.values_[name] = "1";
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argv.size()) {
        usage_error(command, "--" + name + " needs a value (" + option->value_name + ")");
      }
      value = argv[++i];
    }
    args.values_[name] = value;
  }
  if (args.help_) return args;
  if (args.positional_.size() < command.min_positional) {
    usage_error(command, "missing arguments; usage: scratchcrypt " + command.name + " " +
                             command.synopsis);
  }
  if (args.positional_.size() > command.max_positional) {
    usage_error(command, "unexpected argument '" + args.positional_[command.max_positional] +
                             "'; usage: scratchcrypt " + command.name + " " + command.synopsis);
  }
  for (const auto& p : args.positional_) {
    if (p.empty()) usage_error(command, "an empty path was given");
  }
  return args;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string help_text(const Command& command) {
  std::ostringstream out;
  out << "usage: scratchcrypt " << command.name << " " << command.synopsis << "\n\n"
      << command.summary << "\n";
  if (!command.description.empty()) out << "\n" << command.description << "\n";
  out << "\noptions:\n";
  for (const auto& option : command.options) {
    std::string left = (option.name.size() == 1 ? "-" : "--") + option.name;
    if (!option.value_name.empty()) left += " " + option.value_name;
    out << "  " << left;
    out << std::string(left.size() < 24 ? 24 - left.size() : 1, ' ') << option.help << "\n";
  }
  out << "  --help                  show this help\n";
  return out.str();
}

uint64_t parse_number(const std::string& option, const std::string& text) {
  if (text.empty() || text.size() > 19 ||
      !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    throw Error("--" + option + ": '" + text + "' is not a non-negative whole number", 2);
  }
  return std::stoull(text);
}

uint64_t parse_size(const std::string& option, const std::string& text) {
  static const std::string suffixes = "KMGT";
  std::string digits = text;
  uint64_t multiplier = 1;
  if (!digits.empty()) {
    char last = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
    if (last == 'B' && digits.size() > 1) {
      digits.pop_back();
      last = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
    }
    if (auto pos = suffixes.find(last); pos != std::string::npos) {
      multiplier = uint64_t{1} << (10 * (pos + 1));
      digits.pop_back();
    }
  }
  uint64_t value;
  try {
    value = parse_number(option, digits);
  } catch (const Error&) {
    throw Error("--" + option + ": '" + text + "' is not a size (examples: 0, 4096, 512M, 10G)", 2);
  }
  if (value > UINT64_MAX / multiplier) throw Error("--" + option + ": '" + text + "' is too large", 2);
  return value * multiplier;
}

uid_t parse_user(const std::string& option, const std::string& text) {
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
    return static_cast<uid_t>(parse_number(option, text));
  }
  if (const passwd* pw = ::getpwnam(text.c_str())) return pw->pw_uid;
  throw Error("--" + option + ": no such user '" + text + "'", 2);
}

gid_t parse_group(const std::string& option, const std::string& text) {
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
    return static_cast<gid_t>(parse_number(option, text));
  }
  if (const group* gr = ::getgrnam(text.c_str())) return gr->gr_gid;
  throw Error("--" + option + ": no such group '" + text + "'", 2);
}

mode_t parse_mode(const std::string& option, const std::string& text) {
  if (text.empty() || text.size() > 4 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    throw Error("--" + option + ": '" + text + "' is not an octal mode such as 0700", 2);
  }
  return static_cast<mode_t>(std::stoul(text, nullptr, 8));
}

}  // namespace scratchcrypt::cli
