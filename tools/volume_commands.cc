// `scratchcrypt wipe`, `sweep` and `status`.
#include <cstdio>
#include <iostream>

#include "fuse/error.h"
#include "tools/commands.h"
#include "tools/config.h"
#include "tools/metrics.h"
#include "tools/status.h"
#include "tools/wipe.h"

namespace scratchcrypt {

const cli::Command kWipeCommand = {
    "wipe",
    "[options] MOUNTPOINT|BACKING|VOLUME-ID",
    "End a volume for good: unmount it, destroy its key, delete its ciphertext.",
    "The key is destroyed in the daemon and the kernel keyring before wipe returns\n"
    "(crypto-erase: from then on nobody can read the volume). The backing directory is\n"
    "renamed aside at once and deleted in the background (--wait waits), free blocks are\n"
    "trimmed where the disk supports it, and a JSON record is appended to record_log.\n"
    "Refuses (exit 3) while processes use the volume, listing them; --force cuts them\n"
    "off (their I/O fails), also in other mount namespaces. Refuses (exit 4) anything\n"
    "that is not a scratchcrypt volume, a volume found only on disk outside backing_root\n"
    "(one the registry knows is wiped where it is) and a stale record, touching nothing.",
    {{"force", "", "cut off processes that still use the volume"},
     {"wait", "", "return only when the ciphertext is deleted and the record written"},
     {"job", "ID", "job id for the record (default: the volume's own)"},
     kConfigOption},
    1,
    1,
};

const cli::Command kSweepCommand = {
    "sweep",
    "[options]",
    "At node boot: end every volume and key that a crash or power loss left behind.",
    "Ends each volume under backing_root whose daemon is not running, destroys keyring\n"
    "keys of volumes that exist nowhere (no mount, record or backing), detaches mounts\n"
    "of dead daemons, and finishes interrupted deletions, with a record for each. Live\n"
    "volumes are left alone.",
    {kConfigOption},
    0,
    0,
};

const cli::Command kStatusCommand = {
    "status",
    "[options]",
    "List this node's volumes: mount point, job, owner, daemon, health, space used.",
    "Health is ok (served), dead (the daemon is gone: `mount --recover` or `wipe`), or\n"
    "unmounted (stored, key kept for --recover).",
    {{"json", "", "print JSON, for monitoring"}, kConfigOption},
    0,
    0,
};

int run_wipe(const cli::Args& args) {
  const Config config = load_config(args.get("config"));
  WipeOptions options;
  options.force = args.has("force");
  options.wait = args.has("wait");
  options.job = args.get("job");
  wipe_volume(config, args.positional()[0], options);
  update_metrics(config);  // volumes live; the record's own update may still be under way
  return 0;
}

int run_sweep(const cli::Args& args) {
  const Config config = load_config(args.get("config"));
  SweepResult result = sweep(config);
  update_metrics(config);
  std::printf("swept %d volume(s), %d unfinished deletion(s), %d stale key(s), %d dead mount(s)\n",
              result.volumes, result.trash, result.keys, result.dead_mounts);
  return 0;
}

int run_status(const cli::Args& args) {
  const Config config = load_config(args.get("config"));
  const auto volumes = volume_statuses(config);
  std::cout << (args.has("json") ? status_json(volumes) : status_table(volumes));
  return 0;
}

}  // namespace scratchcrypt
