// The raw bytes that travel beside a message's protobuf body. Either owned (a
// string) or held: bytes in memory that belongs to someone else, such as an
// RDMA-registered buffer, which its keeper gives back once the last copy of
// the payload is gone. Moving or narrowing a payload never copies its bytes,
// so a transport can hand its own memory to a handler and back.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace sealfs::rpc {

class Payload {
 public:
  Payload() = default;
  Payload(std::string bytes) : owned_(std::move(bytes)), size_(owned_.size()) {}  // NOLINT
  Payload(const Payload&) = default;
  Payload& operator=(const Payload&) = default;
  // A moved-from payload is empty, never a view of memory it no longer keeps.
  Payload(Payload&& other) noexcept { *this = std::move(other); }
  Payload& operator=(Payload&& other) noexcept {
    if (this != &other) {
      owned_ = std::move(other.owned_);
      held_ = std::exchange(other.held_, nullptr);
      offset_ = std::exchange(other.offset_, 0);
      size_ = std::exchange(other.size_, 0);
      keeper_ = std::move(other.keeper_);
      owner_ = std::exchange(other.owner_, nullptr);
      other.owned_.clear();
    }
    return *this;
  }

  // `size` bytes at `data`, valid while `keeper` lives. `owner` names who
  // lent the memory, so that owner can recognise its own memory on the way
  // back (an RDMA connection sends registered memory without a copy).
  static Payload Held(char* data, size_t size, std::shared_ptr<void> keeper, const void* owner) {
    Payload payload;
    payload.held_ = data;
    payload.size_ = size;
    payload.keeper_ = std::move(keeper);
    payload.owner_ = owner;
    return payload;
  }

  const char* data() const { return base() + offset_; }
  char* mutable_data() { return base() + offset_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data(), size_}; }
  operator std::string_view() const { return view(); }  // NOLINT
  std::string ToString() const { return std::string(view()); }
  // The bytes as a string: moved out when owned whole, copied otherwise.
  std::string TakeString() {
    std::string bytes;
    if (held_ == nullptr && offset_ == 0 && size_ == owned_.size()) {
      bytes = std::move(owned_);
    } else {
      bytes = ToString();
    }
    *this = Payload();
    return bytes;
  }

  // Keeps only `length` bytes from `offset`, cut to the current bytes.
  void Narrow(size_t offset, size_t length) {
    offset = std::min(offset, size_);
    offset_ += offset;
    size_ = std::min(length, size_ - offset);
  }

  const void* owner() const { return owner_; }
  const std::shared_ptr<void>& keeper() const { return keeper_; }

 private:
  char* base() { return held_ != nullptr ? held_ : owned_.data(); }
  const char* base() const { return held_ != nullptr ? held_ : owned_.data(); }

  std::string owned_;
  char* held_ = nullptr;
  size_t offset_ = 0;
  size_t size_ = 0;
  std::shared_ptr<void> keeper_;
  const void* owner_ = nullptr;
};

inline bool operator==(const Payload& payload, std::string_view bytes) {
  return payload.view() == bytes;
}

}  // namespace sealfs::rpc
