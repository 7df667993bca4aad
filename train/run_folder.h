// A run's output folder, held by one run at a time. RunFolder::claim takes an exclusive
// lock (flock on DIR/.qforge.lock, released however the process ends) and writes the
// holder's pid into the lock file, so a second run on the same folder — started at the
// same moment or later — is refused with the folder and the holder named, instead of
// both writing into it. `--force` clears what an earlier run left (clear_run_outputs), so
// a folder never holds one run's model beside another's summary.
#pragma once

#include <string>
#include <vector>

namespace qforge::train {

class RunFolder {
 public:
  // Creates `dir` if needed and locks it; an error names the folder and the holder's pid.
  static RunFolder claim(const std::string& dir);
  RunFolder() = default;
  RunFolder(RunFolder&& other) noexcept;
  RunFolder& operator=(RunFolder&& other) noexcept;
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;
  ~RunFolder();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Removes the files a qforge run writes into `dir` (config.json, summary.json, metrics*.jsonl,
// checkpoint*.qf, model*.qf, model*.qfm, model*.onnx, curves.svg), except `keep` (a run's own
// inputs, such as an fp32 checkpoint in the same folder). Other files are left alone.
void clear_run_outputs(const std::string& dir, const std::vector<std::string>& keep);

}  // namespace qforge::train
