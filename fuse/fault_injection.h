// Fault injection for the filesystem tests: makes chosen steps of the data
// path fail the way a failing disk or a failing library would, so that the
// tests can check what a failed call leaves behind.
//
// Inert in production: only a daemon started with the environment variable
// SCRATCHCRYPT_FAULT_FILE=PATH (mounting needs root, so only root can set it)
// looks at faults at all; it then reads PATH at every injection point, and a
// point fails while PATH holds its name on a line of its own. Without the
// variable, fault_injected() is one load of a cached false.
//
// Points: "store-eio" (every write of stored bytes by the data path fails
// with EIO, nothing written), "main-store-eio" (only the store of a write's
// own data units fails, after any re-encryption of the old last unit),
// "ftruncate-eio" (resizing the backing file in a truncate fails), "throw"
// (a read or write throws std::runtime_error, as an OpenSSL failure does),
// "bad-alloc" (it throws std::bad_alloc), "slow-forget" (FORGET is handled
// 300 ms late, as under load). Rollbacks are never failed.
#pragma once

namespace scratchcrypt {

bool fault_injected(const char* point);

}  // namespace scratchcrypt
