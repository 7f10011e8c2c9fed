// Node metrics for fleet monitoring: a Prometheus text-format file (for
// node_exporter's textfile collector) at `metrics_file`, rewritten
// atomically (temporary file in the same directory, fsync, rename) after
// each prologue, epilogue, wipe record, sweep and health check.
//
// Counters must survive the process that writes them, so they are derived
// from the wipe record log: a small state file beside the metrics file,
// `<metrics_file>.state`, holds the totals and how far into the log they
// have been counted. Each update reads only the records appended since, so
// its cost does not grow with the log, and a rotated log (another inode, or
// shorter than the offset) is read from its start while the totals carry on.
// Deleting the state file starts the counters again from the current log,
// which Prometheus treats as a counter reset.
#pragma once

#include <optional>
#include <string>

#include "tools/config.h"

namespace scratchcrypt {

// Rewrites the metrics file, when one is configured. `health_problems` is
// the count `health` just found (kept for later updates); nullopt keeps the
// last one. Never throws: metrics must not fail a wipe or a job start, so a
// failure is logged (syslog or stderr) and the rest goes on.
void update_metrics(const Config& config, std::optional<int> health_problems = std::nullopt);

}  // namespace scratchcrypt
