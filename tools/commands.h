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

int run_mount(const cli::Args& args);
int run_umount(const cli::Args& args);
extern const cli::Command kMountCommand;
extern const cli::Command kUmountCommand;

}  // namespace scratchcrypt
