// `scratchcrypt health`: whether this node should take jobs.
//
// One line per problem, each naming what is wrong and what to do, for
// Slurm's HealthCheckProgram (packaging/slurm/healthcheck.sh) and cloud
// health probes. A node is healthy when it has no leftover volume (a dead
// daemon, a dead mount, a registry record without its mount, a stored volume
// no daemon serves), no unfinished deletion, no key that outlived its
// volume's wipe, and room on the backing disk. Live volumes are not problems:
// whether their jobs still run is the scheduler's business.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "tools/config.h"

namespace scratchcrypt {

// The problems of this node under `config`, in a stable order; empty when
// healthy. Looks only at what `config` and the volume registry cover
// (backing_root, mount_root, node_mount, registered volumes) plus root's
// keyring, so that volumes of other configurations are not reported.
std::vector<std::string> health_problems(const Config& config);

// Keys "scratchcrypt:<id>" in root's keyring of volumes that this node has
// ended (their id is in the record log) and that exist nowhere any more: no
// mount (in any mount namespace), no registry record, no backing under
// backing_root. Keys of volumes without such a record are left out: the
// keyring is shared by every configuration on the machine.
std::vector<std::string> stale_keys(const Config& config);

// Ids of the volumes mounted in any mount namespace of the machine: a volume
// mounted only inside a container or a daemon's private namespace still owns
// its key.
std::set<std::string> volumes_mounted_anywhere();

}  // namespace scratchcrypt
