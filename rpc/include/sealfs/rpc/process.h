// Small helpers every SealFS daemon shares: command-line flags, writing the
// bound port for whoever started us, and waiting for a termination signal.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs {

// Parses "--name value" and "--name=value" pairs; bare "--name" means "true".
class Flags {
 public:
  static Result<Flags> Parse(int argc, char** argv, const std::vector<std::string>& known);
  // The last value given for `name`; GetAll: every value, in order.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  long long GetInt(const std::string& name, long long fallback) const;
  bool Has(const std::string& name) const { return values_.contains(name); }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_values_;
  std::vector<std::string> positional_;
};

// Writes `content` to `path` atomically (temp file + rename).
Status WriteFileAtomically(const std::string& path, const std::string& content);

// Blocks SIGINT/SIGTERM/SIGHUP for all threads; call before starting any.
void BlockTerminationSignals();
// Waits until one of them arrives; returns its number.
int WaitForTerminationSignal();

}  // namespace sealfs
