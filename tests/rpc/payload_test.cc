// Payload: owned or held bytes, handed on without copies.
#include "sealfs/rpc/payload.h"

#include <gtest/gtest.h>

#include <memory>

namespace sealfs::rpc {
namespace {

TEST(PayloadTest, OwnedBytesMoveOutWithoutACopy) {
  std::string bytes(1 << 20, 'x');
  const char* where = bytes.data();
  Payload payload(std::move(bytes));
  EXPECT_EQ(payload.size(), 1u << 20);
  EXPECT_EQ(payload.owner(), nullptr);
  Payload moved = std::move(payload);
  EXPECT_EQ(moved.data(), where);
  EXPECT_TRUE(payload.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  std::string taken = moved.TakeString();
  EXPECT_EQ(taken.data(), where);
  EXPECT_TRUE(moved.empty());
}

TEST(PayloadTest, HeldBytesGoBackWhenTheLastCopyGoes) {
  char memory[64] = "0123456789";
  int returned = 0;
  auto keeper = std::shared_ptr<void>(memory, [&returned](void*) { ++returned; });
  int owner_tag = 0;
  Payload payload = Payload::Held(memory, 10, std::move(keeper), &owner_tag);
  EXPECT_EQ(payload.view(), "0123456789");
  EXPECT_EQ(payload.owner(), &owner_tag);
  {
    Payload copy = payload;
    Payload moved = std::move(payload);
    EXPECT_EQ(payload.owner(), nullptr);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(payload.size(), 0u);        // NOLINT(bugprone-use-after-move)
    moved = Payload();
    EXPECT_EQ(returned, 0);
    EXPECT_EQ(copy.data(), memory);
  }
  EXPECT_EQ(returned, 1);
}

TEST(PayloadTest, NarrowKeepsARangeInPlace) {
  char memory[16] = "abcdefghij";
  Payload held = Payload::Held(memory, 10, nullptr, nullptr);
  held.Narrow(2, 5);
  EXPECT_EQ(held.view(), "cdefg");
  EXPECT_EQ(held.data(), memory + 2);
  EXPECT_EQ(held.TakeString(), "cdefg");

  Payload clamped = Payload::Held(memory, 10, nullptr, nullptr);
  clamped.Narrow(8, 100);  // never past the bytes it has
  EXPECT_EQ(clamped.view(), "ij");
  clamped.Narrow(50, 1);
  EXPECT_TRUE(clamped.empty());

  Payload owned(std::string("abcdefghij"));
  owned.Narrow(3, 2);
  EXPECT_EQ(owned.view(), "de");
  EXPECT_EQ(owned.TakeString(), "de");  // a range of an owned string is copied out
}

}  // namespace
}  // namespace sealfs::rpc
