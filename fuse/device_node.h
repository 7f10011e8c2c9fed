// Device nodes (docs/FORMAT.md section 6.2): a character or block device
// made through the mount is stored as a backing FIFO, with its type and
// device number in an encrypted xattr of that FIFO. Nothing on the backing
// disk can be opened as a device, by root on the host either, and the
// volume is mounted nodev, so the node is inert on both sides, as on a
// local disk mounted nodev. Owner, mode, times, links and renames are the
// backing FIFO's own.
//
// The xattr is in the trusted namespace (the daemon is root): FIFOs cannot
// hold user xattrs.
//
// Functions return 0 or -errno; nothing throws.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include "crypto/name_cipher.h"

namespace scratchcrypt {

inline constexpr const char* kDeviceXattr = "trusted.scratchcrypt.dev";

// Creates the backing FIFO `at` in directory `dir_fd` for a device node of
// `mode` (S_IFCHR or S_IFBLK, and permission bits) and number `rdev`.
int make_device_node(NameCipher& names, int dir_fd, const char* at, mode_t mode, dev_t rdev);

// When the backing object `path_fd`, whose lstat is `st`, is a FIFO holding
// a device node, makes `st` show the device (type and st_rdev). A record
// that does not decrypt is logged and the FIFO shown as it is, so that it
// can still be removed.
void show_device_node(NameCipher& names, int path_fd, struct stat* st);

// The directory entry type (DT_*) of backing entry `name` in `dir_fd`,
// whose backing type is `d_type`: DT_CHR or DT_BLK for a device node.
unsigned char shown_entry_type(NameCipher& names, int dir_fd, const char* name,
                               unsigned char d_type);

}  // namespace scratchcrypt
