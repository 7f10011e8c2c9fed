// The subcommands of `scratchcrypt`. Each takes its arguments (after the
// subcommand's name) and returns the process exit status; refusals throw
// Error with the status and an operator-facing message.
//
// Exit statuses (docs/OPERATIONS.md): 0 done, 1 failed, 2 bad usage,
// 3 busy (holders listed), 4 refused (wrong target or state).
#pragma once

#include <string>
#include <vector>

#include "tools/cli.h"

namespace scratchcrypt {

struct Subcommand {
  cli::Command spec;
  int (*run)(const cli::Args& args);
};

const std::vector<Subcommand>& subcommands();

// --config, shared by every command that reads the node configuration.
inline const cli::Option kConfigOption = {
    "config", "FILE",
    "configuration file (default: $SCRATCHCRYPT_CONFIG or /etc/scratchcrypt/scratchcrypt.conf)"};

#define SCRATCHCRYPT_SUBCOMMAND(name, Name)     \
  int run_##name(const cli::Args& args);        \
  extern const cli::Command k##Name##Command;
SCRATCHCRYPT_SUBCOMMAND(mount, Mount)
SCRATCHCRYPT_SUBCOMMAND(umount, Umount)
SCRATCHCRYPT_SUBCOMMAND(wipe, Wipe)
SCRATCHCRYPT_SUBCOMMAND(sweep, Sweep)
SCRATCHCRYPT_SUBCOMMAND(status, Status)
SCRATCHCRYPT_SUBCOMMAND(health, Health)
SCRATCHCRYPT_SUBCOMMAND(prologue, Prologue)
SCRATCHCRYPT_SUBCOMMAND(epilogue, Epilogue)
SCRATCHCRYPT_SUBCOMMAND(config, Config)
#undef SCRATCHCRYPT_SUBCOMMAND

}  // namespace scratchcrypt
