// Kernel keyring custody of volume keys.
//
// A running volume's key also lives in the kernel, as a "user" key named
// "scratchcrypt:<volume id>" in root's user keyring, readable by uid 0 only.
// That lets a crashed daemon be restarted (mount --recover) without the key
// ever touching a disk; the kernel forgets it at reboot, and wipe
// invalidates it. Job users cannot read root's keyring.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/volume_key.h"

namespace scratchcrypt::keyring {

// Stores (or replaces) the key of a volume, with the permissions above from
// the moment it can be found (it is staged in the calling thread's keyring).
// Throws on failure.
void store(std::string_view volume_id, const VolumeKey& key);
// The stored key, or nullopt when the kernel has none for this volume.
std::optional<VolumeKey> load(std::string_view volume_id);
// Invalidates the key at once (the kernel zeroes and frees it).
// True if a key was there.
bool remove(std::string_view volume_id);
// Volume ids that have a key in the keyring.
std::vector<std::string> list();

}  // namespace scratchcrypt::keyring
