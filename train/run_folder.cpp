#include "train/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace qforge::train {

namespace fs = std::filesystem;

RunFolder RunFolder::claim(const std::string& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  QF_CHECK(!error, dir, ": cannot create the output folder (", error.message(), ")");
  const std::string lock = dir + "/.qforge.lock";
  RunFolder folder;
  folder.path_ = dir;
  folder.fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  QF_CHECK(folder.fd_ >= 0, lock, ": cannot open the run's lock file (", std::strerror(errno), ")");
  if (::flock(folder.fd_, LOCK_EX | LOCK_NB) != 0) {
    char holder[32] = {};
    const ssize_t n = ::pread(folder.fd_, holder, sizeof holder - 1, 0);
    const std::string pid = n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : "unknown";
    QF_FAIL(dir, " is in use by another qforge run (pid ", pid.substr(0, pid.find_first_of("\n ")),
            "); wait for it to finish, or --out another folder");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  QF_CHECK(::ftruncate(folder.fd_, 0) == 0 &&
               ::pwrite(folder.fd_, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size()),
           lock, ": cannot write the run's lock file (", std::strerror(errno), ")");
  return folder;
}

RunFolder::RunFolder(RunFolder&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

RunFolder& RunFolder::operator=(RunFolder&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RunFolder::~RunFolder() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

namespace {
bool is_run_output(const std::string& name) {
  auto has = [&](const char* prefix, const char* suffix) {
    const std::string p(prefix), s(suffix);
    return name.size() >= p.size() + s.size() && name.compare(0, p.size(), p) == 0 &&
           name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return name == "config.json" || name == "summary.json" || name == "curves.svg" ||
         has("metrics", ".jsonl") || has("checkpoint", ".qf") || has("model", ".qf") ||
         has("model", ".qfm") || has("model", ".onnx");
}
}  // namespace

void clear_run_outputs(const std::string& dir, const std::vector<std::string>& keep) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || !is_run_output(entry.path().filename().string())) continue;
    bool is_kept = false;
    for (const std::string& path : keep) is_kept = is_kept || fs::equivalent(entry.path(), path, error);
    if (is_kept) continue;
    fs::remove(entry.path(), error);
    QF_CHECK(!error, entry.path().string(), ": cannot remove it for --force (", error.message(), ")");
  }
}

}  // namespace qforge::train
