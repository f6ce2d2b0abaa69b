// Status and Result: errors as values across module boundaries.
//
// A Status carries a POSIX errno (0 means success) and a message that says what
// went wrong. The errno is what a FUSE reply or a syscall-facing caller needs;
// the message is what a person reading a log needs.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sealfs {

class Status {
 public:
  Status() = default;
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status Error(int code, std::string message) { return {code, std::move(message)}; }

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  int code_ = 0;
  std::string message_;
};

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace sealfs

#define SEALFS_RETURN_IF_ERROR(expr) \
  do {                               \
    ::sealfs::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)
