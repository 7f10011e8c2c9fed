#include "fuse/registry.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "fuse/error.h"
#include "fuse/mounts.h"

namespace scratchcrypt {

namespace {

std::string record_path(const std::string& id) { return registry_dir() + "/" + id + ".json"; }

}  // namespace

std::string json_field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  auto pos = json.find(needle);
  if (pos == std::string::npos) return {};
  pos += needle.size();
  while (pos < json.size() && json[pos] == ' ') ++pos;
  if (pos < json.size() && json[pos] == '"') {
    std::string out;
    for (++pos; pos < json.size() && json[pos] != '"'; ++pos) {
      if (json[pos] == '\\' && pos + 1 < json.size()) ++pos;
      out.push_back(json[pos]);
    }
    return out;
  }
  auto end = json.find_first_of(",}", pos);
  return json.substr(pos, end - pos);
}

std::string registry_dir() {
  const char* dir = std::getenv("SCRATCHCRYPT_RUN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : "/run/scratchcrypt/volumes";
}

std::string image_mount_root() {
  const char* dir = std::getenv("SCRATCHCRYPT_RUN_DIR");
  return dir != nullptr && *dir != '\0' ? std::string(dir) + "/images" : "/run/scratchcrypt/images";
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' &&
         line[paren + 2] != 'X';
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

void register_volume(const VolumeRecord& r) {
  const std::string dir = registry_dir();
  ::mkdir("/run/scratchcrypt", 0700);
  ::mkdir(dir.c_str(), 0700);
  std::ostringstream json;
  json << "{\"id\": \"" << r.id << "\", \"backing\": \"" << json_escape(r.backing)
       << "\", \"mountpoint\": \"" << json_escape(r.mountpoint) << "\", \"pid\": " << r.pid
       << ", \"uid\": " << r.uid << ", \"gid\": " << r.gid << ", \"job\": \""
       << json_escape(r.job) << "\", \"size_limit\": " << r.size_limit
       << ", \"started\": " << r.started;
  if (!r.layout.empty()) {
    json << ", \"layout\": \"" << json_escape(r.layout) << "\", \"loop\": \"" << json_escape(r.loop)
         << "\", \"image_mount\": \"" << json_escape(r.image_mount) << "\"";
  }
  json << "}\n";
  const std::string path = record_path(r.id), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json.str();
    if (!out) throw Error("cannot write the volume registry in " + dir);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error(errno_text("cannot write the volume registry in " + dir, errno));
  }
}

void unregister_volume(const std::string& id) { ::unlink(record_path(id).c_str()); }

std::vector<VolumeRecord> registered_volumes() {
  std::vector<VolumeRecord> out;
  DIR* dir = ::opendir(registry_dir().c_str());
  if (dir == nullptr) return out;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
    std::ifstream in(registry_dir() + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    const std::string json = text.str();
    VolumeRecord r;
    r.id = json_field(json, "id");
    if (r.id.empty()) continue;
    r.backing = json_field(json, "backing");
    r.mountpoint = json_field(json, "mountpoint");
    r.pid = std::atoi(json_field(json, "pid").c_str());
    r.uid = static_cast<uid_t>(std::strtoul(json_field(json, "uid").c_str(), nullptr, 10));
    r.gid = static_cast<gid_t>(std::strtoul(json_field(json, "gid").c_str(), nullptr, 10));
    r.job = json_field(json, "job");
    r.size_limit = std::strtoull(json_field(json, "size_limit").c_str(), nullptr, 10);
    r.started = std::strtoll(json_field(json, "started").c_str(), nullptr, 10);
    r.layout = json_field(json, "layout");
    r.loop = json_field(json, "loop");
    r.image_mount = json_field(json, "image_mount");
    out.push_back(std::move(r));
  }
  ::closedir(dir);
  return out;
}

std::optional<VolumeRecord> find_volume(const std::string& path) {
  // The same normalization the daemon used when it registered the paths; it
  // also works on a dead mount point, where realpath(3) fails.
  const std::string wanted = absolute_path(path);
  for (auto& r : registered_volumes()) {
    if (r.mountpoint == wanted || r.backing == wanted || r.id == path) return r;
  }
  return std::nullopt;
}

}  // namespace scratchcrypt
