// scratchcrypt: encrypted, per-job scratch volumes for compute nodes.
// Dispatches to the subcommands in tools/commands.h.
#include <fuse_lowlevel.h>
#include <openssl/crypto.h>
#include <sodium.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fuse/error.h"
#include "tools/commands.h"

#ifndef SCRATCHCRYPT_VERSION
#define SCRATCHCRYPT_VERSION "0.1.0"
#endif

namespace scratchcrypt {
namespace {

bool cpu_has(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) return (line + " ").find(" " + flag + " ") != std::string::npos;
  }
  return false;
}

void print_version() {
  const bool aes = cpu_has("aes"), vaes = cpu_has("vaes");
  std::printf("scratchcrypt %s\n", SCRATCHCRYPT_VERSION);
  std::printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_FULL_VERSION_STRING));
  std::printf("libsodium %s\n", sodium_version_string());
  std::printf("libfuse %s\n", fuse_pkgversion());
  std::printf("AES-NI: %s%s%s\n", aes ? "yes" : "no (software AES: slow)",
              vaes ? ", VAES: yes" : "",
              std::getenv("OPENSSL_ia32cap") ? " (OPENSSL_ia32cap is set and may disable it)" : "");
}

void print_overview() {
  std::printf(
      "usage: scratchcrypt COMMAND [options] [arguments]\n\n"
      "Encrypted scratch volumes for the jobs of a compute node: AES-256-XTS contents,\n"
      "encrypted names, a random key per volume that never touches a disk, and a\n"
      "verified wipe between jobs.\n\ncommands:\n");
  for (const auto& sub : subcommands()) {
    std::printf("  %-10s %s\n", sub.spec.name.c_str(), sub.spec.summary.c_str());
  }
  std::printf("\n`scratchcrypt COMMAND --help` describes each command; `scratchcrypt --version`\n"
              "prints the versions in use. See scratchcrypt(8).\n");
}

int dispatch(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "help" || std::string(argv[1]) == "--help" ||
      std::string(argv[1]) == "-h") {
    if (argc >= 3 && std::string(argv[1]) == "help") {
      for (const auto& sub : subcommands()) {
        if (sub.spec.name == argv[2]) {
          std::cout << cli::help_text(sub.spec);
          return 0;
        }
      }
    }
    print_overview();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  if (name == "--version" || name == "version") {
    print_version();
    return 0;
  }
  for (const auto& sub : subcommands()) {
    if (sub.spec.name != name) continue;
    cli::Args args = cli::Args::parse(sub.spec, {argv + 2, argv + argc});
    if (args.help()) {
      std::cout << cli::help_text(sub.spec);
      return 0;
    }
    return sub.run(args);
  }
  throw Error("unknown command '" + name + "'; run `scratchcrypt help` for the list", 2);
}

}  // namespace

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> all = {
      {kMountCommand, run_mount},
      {kUmountCommand, run_umount},
      {kWipeCommand, run_wipe},
      {kSweepCommand, run_sweep},
      {kStatusCommand, run_status},
      {kHealthCommand, run_health},
      {kPrologueCommand, run_prologue},
      {kEpilogueCommand, run_epilogue},
      {kConfigCommand, run_config},
  };
  return all;
}

}  // namespace scratchcrypt

int main(int argc, char** argv) {
  try {
    return scratchcrypt::dispatch(argc, argv);
  } catch (const scratchcrypt::Error& e) {
    std::fprintf(stderr, "scratchcrypt: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scratchcrypt: %s\n", e.what());
    return 1;
  }
}
