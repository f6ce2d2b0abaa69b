#include "sealfs/rpc/status.h"

#include <cstring>

namespace sealfs {

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string text = strerrordesc_np(code_) ? strerrordesc_np(code_) : "unknown error";
  if (!message_.empty()) text += ": " + message_;
  return text;
}

}  // namespace sealfs
