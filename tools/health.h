// `scratchcrypt health`: whether this node should take jobs.
//
// One line per problem, each naming what is wrong and what to do, for
// Slurm's HealthCheckProgram (packaging/slurm/healthcheck.sh) and cloud
// health probes. A node is healthy when it has no leftover volume (a dead
// daemon, a dead mount, a registry record without its mount, a stored volume
// no daemon serves), no unfinished deletion, no key of a volume that no
// longer exists, and room on the backing disk. Live volumes are not problems:
// whether their jobs still run is the scheduler's business.
#pragma once

#include <string>
#include <vector>

#include "tools/config.h"

namespace scratchcrypt {

// The problems of this node under `config`, in a stable order; empty when
// healthy. Looks only at what `config` and the volume registry cover
// (backing_root, mount_root, node_mount, registered volumes) plus root's
// keyring, so that volumes of other configurations are not reported.
std::vector<std::string> health_problems(const Config& config);

// Keys "scratchcrypt:<id>" in root's keyring whose volume exists nowhere on
// this node: no mount (in any mount namespace), no registry record, no
// backing under backing_root.
std::vector<std::string> stale_keys(const Config& config);

}  // namespace scratchcrypt
