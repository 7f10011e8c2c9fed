// Ending volumes for good: wipe (one volume) and sweep (every leftover).
//
// A wipe first crypto-erases, synchronously: the FUSE connection is cut (with
// --force) and unmounted, the daemon exits (zeroizing its key), the key is
// invalidated in the kernel keyring. From then on the ciphertext is
// unreadable by anyone. The backing directory is then renamed aside at once,
// so a new volume can take its place, and deleted (in the background unless
// `wait`), after which free blocks are trimmed and the record is appended.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tools/config.h"

namespace scratchcrypt {

struct WipeOptions {
  bool force = false;  // cut off processes that still use the volume
  bool wait = false;   // delete the ciphertext before returning
  std::string job;     // recorded; defaults to the job the volume was made for
  // Without `wait`: how long to wait for the background deletion before
  // returning anyway. A deletion that fails within it makes wipe fail (so a
  // scheduler drains the node); a later failure is caught by the next
  // prologue, epilogue or sweep.
  std::chrono::milliseconds deletion_grace{500};
};

// Finishes deletions that an earlier wipe left behind (failed or died) in
// backing_root. Throws Error when one still cannot be completed: the node
// needs an operator. Deletions still in progress are left to run.
void finish_abandoned_deletions(const Config& config);

// The renamed-aside backings (<backing_root>/.wiped-<id>) whose deletion
// failed or died; deletions still in progress are not listed.
std::vector<std::string> abandoned_deletions(const Config& config);

// Ends the volume at `target` (its mount point, backing directory or id).
// Throws Error: exit 4 when `target` is no volume of ours, when its backing
// holds another volume (a stale record), or when it was found only on disk
// outside backing_root (a volume the registry knows is wiped where it is);
// 3 when busy without force. Nothing is touched then. Exit 1 when the
// ciphertext cannot be found: the volume is crypto-erased, the record says
// it is not verified.
void wipe_volume(const Config& config, const std::string& target, const WipeOptions& options);

struct SweepResult {
  int volumes = 0;       // leftover volumes ended
  int trash = 0;         // half-deleted wipes finished
  int keys = 0;          // stale keyring entries dropped (also of volumes that exist nowhere)
  int dead_mounts = 0;   // mounts of dead daemons detached
};

// Ends everything a crash or power loss left: volumes under backing_root
// without a live daemon (with their keys), keys of volumes that exist
// nowhere (no mount, no registry record, no backing), dead scratchcrypt
// mounts, and unfinished deletions. Live volumes, and volumes outside
// backing_root, are left alone (but an unmounted one outside loses its key).
SweepResult sweep(const Config& config);

}  // namespace scratchcrypt
