// Wipe records: one JSON object per line appended to the record log, one per
// volume ended (by wipe, epilogue or sweep). A record names the volume, the
// job, the times and the amounts, and holds no key material and no name or
// path from inside the volume.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace scratchcrypt {

struct WipeRecord {
  std::string event = "wipe";  // wipe | sweep
  std::string volume;
  std::string job;
  uid_t uid = 0;
  std::string backing;
  std::string mountpoint;
  int64_t started_ms = 0;          // unix milliseconds
  int64_t crypto_erased_ms = 0;    // key gone, mount gone
  int64_t deletion_finished_ms = 0;
  uint64_t files_removed = 0;
  uint64_t bytes_removed = 0;
  bool forced = false;
  int holders_cut_off = 0;
  bool key_found = false;          // a key was in the keyring and is now gone
  // after-record: FITRIM runs once the record is written (it can take many
  // seconds), its outcome is logged; skipped: trim = no, or nothing deleted.
  std::string trim = "skipped";
  bool verified = false;           // no mount, no key, no backing left
  std::string outcome = "complete";
  std::string error;               // why, when outcome is "failed"
};

int64_t now_ms();
std::string iso_time(int64_t unix_ms);
std::string to_json(const WipeRecord& record);

// Appends one line to the log (created 0640 with its directory), under an
// exclusive lock, and fsyncs it. Throws Error when it cannot.
void append_record(const std::string& log_path, const WipeRecord& record);

}  // namespace scratchcrypt
