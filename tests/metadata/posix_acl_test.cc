// POSIX ACLs: the xattr format, the mode/ACL rules, and how MetaStore applies
// them (setxattr, chmod, create under a default ACL) on a real RocksDB.
#include "posix_acl.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>

#include "sealfs/metadata/meta_store.h"

namespace sealfs::metadata {
namespace {

constexpr uint32_t kNone = kAclUndefinedId;

// Encodes by hand, independently of PosixAcl::Encode, in the given order.
std::string Xattr(std::initializer_list<AclEntry> entries, uint32_t version = kAclVersion) {
  std::string out;
  auto put = [&out](uint32_t value, int width) {
    for (int i = 0; i < width; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
  };
  put(version, 4);
  for (const AclEntry& entry : entries) {
    put(entry.tag, 2);
    put(entry.perm, 2);
    put(entry.id, 4);
  }
  return out;
}

// user::rw- user:1234:rwx group::r-- mask::rwx other::r--
std::string NamedUserAcl() {
  return Xattr({{kAclUserObj, 6, kNone},
                {kAclUser, 7, 1234},
                {kAclGroupObj, 4, kNone},
                {kAclMask, 7, kNone},
                {kAclOther, 4, kNone}});
}

std::string BaseAcl(uint16_t owner, uint16_t group, uint16_t other) {
  return Xattr(
      {{kAclUserObj, owner, kNone}, {kAclGroupObj, group, kNone}, {kAclOther, other, kNone}});
}

AclEntry EntryOf(const std::string& value, uint16_t tag) {
  auto acl = PosixAcl::Parse(value);
  EXPECT_TRUE(acl.ok()) << acl.status().ToString();
  if (!acl.ok()) return {};
  for (const AclEntry& entry : acl->entries()) {
    if (entry.tag == tag) return entry;
  }
  ADD_FAILURE() << "no entry with tag " << tag;
  return {};
}

// ---------------------------------------------------------------- format

TEST(PosixAclFormat, ParseAndEncodeRoundTrip) {
  std::string value = NamedUserAcl();
  auto acl = PosixAcl::Parse(value);
  ASSERT_TRUE(acl.ok()) << acl.status().ToString();
  ASSERT_EQ(acl->entries().size(), 5u);
  EXPECT_EQ(acl->entries()[1], (AclEntry{kAclUser, 7, 1234}));
  EXPECT_EQ(acl->Encode(), value);
}

TEST(PosixAclFormat, NamedEntriesAreSortedIntoCanonicalOrder) {
  std::string shuffled = Xattr({{kAclOther, 0, kNone},
                                {kAclUser, 4, 9},
                                {kAclMask, 7, kNone},
                                {kAclGroupObj, 5, kNone},
                                {kAclUser, 2, 3},
                                {kAclUserObj, 7, kNone}});
  auto acl = PosixAcl::Parse(shuffled);
  ASSERT_TRUE(acl.ok()) << acl.status().ToString();
  EXPECT_EQ(acl->Encode(), Xattr({{kAclUserObj, 7, kNone},
                                  {kAclUser, 2, 3},
                                  {kAclUser, 4, 9},
                                  {kAclGroupObj, 5, kNone},
                                  {kAclMask, 7, kNone},
                                  {kAclOther, 0, kNone}}));
}

TEST(PosixAclFormat, MalformedValuesAreEinval) {
  const std::string valid = NamedUserAcl();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"short header", std::string("\x02\x00", 2)},
      {"wrong version",
       Xattr({{kAclUserObj, 6, kNone}, {kAclGroupObj, 4, kNone}, {kAclOther, 4, kNone}}, 1)},
      {"truncated entry", valid.substr(0, valid.size() - 3)},
      {"trailing byte", valid + "x"},
      {"no entries", Xattr({})},
      {"no owner", Xattr({{kAclGroupObj, 4, kNone}, {kAclOther, 4, kNone}})},
      {"no other", Xattr({{kAclUserObj, 6, kNone}, {kAclGroupObj, 4, kNone}})},
      {"no group", Xattr({{kAclUserObj, 6, kNone}, {kAclOther, 4, kNone}})},
      {"two owners", Xattr({{kAclUserObj, 6, kNone},
                            {kAclUserObj, 6, kNone},
                            {kAclGroupObj, 4, kNone},
                            {kAclOther, 4, kNone}})},
      {"two masks", Xattr({{kAclUserObj, 6, kNone},
                           {kAclGroupObj, 4, kNone},
                           {kAclMask, 4, kNone},
                           {kAclMask, 4, kNone},
                           {kAclOther, 4, kNone}})},
      {"duplicate user", Xattr({{kAclUserObj, 6, kNone},
                                {kAclUser, 4, 5},
                                {kAclUser, 6, 5},
                                {kAclGroupObj, 4, kNone},
                                {kAclMask, 6, kNone},
                                {kAclOther, 4, kNone}})},
      {"duplicate group", Xattr({{kAclUserObj, 6, kNone},
                                 {kAclGroupObj, 4, kNone},
                                 {kAclGroup, 4, 7},
                                 {kAclGroup, 4, 7},
                                 {kAclMask, 6, kNone},
                                 {kAclOther, 4, kNone}})},
      {"named user without mask", Xattr({{kAclUserObj, 6, kNone},
                                         {kAclUser, 4, 5},
                                         {kAclGroupObj, 4, kNone},
                                         {kAclOther, 4, kNone}})},
      {"named user without id", Xattr({{kAclUserObj, 6, kNone},
                                       {kAclUser, 4, kNone},
                                       {kAclGroupObj, 4, kNone},
                                       {kAclMask, 4, kNone},
                                       {kAclOther, 4, kNone}})},
      {"id on owner entry",
       Xattr({{kAclUserObj, 6, 0}, {kAclGroupObj, 4, kNone}, {kAclOther, 4, kNone}})},
      {"id on mask entry", Xattr({{kAclUserObj, 6, kNone},
                                  {kAclGroupObj, 4, kNone},
                                  {kAclMask, 4, 12},
                                  {kAclOther, 4, kNone}})},
      {"perm beyond rwx",
       Xattr({{kAclUserObj, 8, kNone}, {kAclGroupObj, 4, kNone}, {kAclOther, 4, kNone}})},
      {"unknown tag", Xattr({{kAclUserObj, 6, kNone},
                             {0x40, 4, kNone},
                             {kAclGroupObj, 4, kNone},
                             {kAclOther, 4, kNone}})},
  };
  for (const auto& [what, value] : cases) {
    auto acl = PosixAcl::Parse(value);
    ASSERT_FALSE(acl.ok()) << what;
    EXPECT_EQ(acl.status().code(), EINVAL) << what;
  }
}

TEST(PosixAclFormat, RandomBytesNeverCrashAndValidResultsReencode) {
  std::mt19937 random(7);
  const std::string valid = NamedUserAcl();
  for (int round = 0; round < 20000; ++round) {
    std::string value = valid;
    // Flip a few bytes or cut the value short.
    for (int flips = random() % 4; flips >= 0; --flips) {
      value[random() % value.size()] = static_cast<char>(random());
    }
    if (random() % 5 == 0) value.resize(random() % value.size());
    auto acl = PosixAcl::Parse(value);
    if (acl.ok()) {
      auto again = PosixAcl::Parse(acl->Encode());
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(again->Encode(), acl->Encode());
    } else {
      EXPECT_EQ(acl.status().code(), EINVAL);
    }
  }
}

// ---------------------------------------------------------------- rules

TEST(PosixAclRules, EquivalenceAndPermissionBits) {
  auto base = PosixAcl::Parse(BaseAcl(7, 5, 0));
  ASSERT_TRUE(base.ok());
  EXPECT_TRUE(base->EquivalentToMode());
  EXPECT_EQ(base->PermissionBits(), 0750u);
  EXPECT_EQ(base->Encode(), PosixAcl::FromMode(S_IFREG | 0750).Encode());
  auto named = PosixAcl::Parse(NamedUserAcl());
  ASSERT_TRUE(named.ok());
  EXPECT_FALSE(named->EquivalentToMode());
  EXPECT_EQ(named->PermissionBits(), 0674u);  // group bits are the mask
  // A mask alone, without named entries, still is not expressible by the mode.
  auto masked = PosixAcl::Parse(Xattr({{kAclUserObj, 6, kNone},
                                       {kAclGroupObj, 6, kNone},
                                       {kAclMask, 4, kNone},
                                       {kAclOther, 0, kNone}}));
  ASSERT_TRUE(masked.ok());
  EXPECT_FALSE(masked->EquivalentToMode());
  EXPECT_EQ(masked->PermissionBits(), 0640u);
}

TEST(PosixAclRules, SettingAnAccessAclSetsTheMode) {
  auto change = SetAclXattr(kAclAccessXattr, NamedUserAcl(), S_IFREG | 04644, true);
  ASSERT_TRUE(change.ok()) << change.status().ToString();
  EXPECT_EQ(change->mode, static_cast<uint32_t>(S_IFREG | 04674));
  ASSERT_TRUE(change->value.has_value());
  EXPECT_EQ(*change->value, NamedUserAcl());
}

TEST(PosixAclRules, AnEquivalentAccessAclIsNotStored) {
  auto change = SetAclXattr(kAclAccessXattr, BaseAcl(7, 0, 0), S_IFREG | 0644, true);
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->mode, static_cast<uint32_t>(S_IFREG | 0700));
  EXPECT_FALSE(change->value.has_value());
}

TEST(PosixAclRules, SetgidIsClearedOnlyWhenTheCallerMayNotKeepIt) {
  auto cleared = SetAclXattr(kAclAccessXattr, NamedUserAcl(), S_IFREG | 02755, false);
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ(cleared->mode & S_ISGID, 0u);
  auto kept = SetAclXattr(kAclAccessXattr, NamedUserAcl(), S_IFREG | 02755, true);
  ASSERT_TRUE(kept.ok());
  EXPECT_NE(kept->mode & S_ISGID, 0u);
  EXPECT_TRUE(MayKeepSetgid(0, 1, {}, 50));        // root
  EXPECT_TRUE(MayKeepSetgid(10, 50, {}, 50));      // primary group
  EXPECT_TRUE(MayKeepSetgid(10, 1, {3, 50}, 50));  // supplementary group
  EXPECT_FALSE(MayKeepSetgid(10, 1, {3, 4}, 50));
}

TEST(PosixAclRules, DefaultAclsOnlyOnDirectoriesAndNoneOnSymlinks) {
  EXPECT_EQ(SetAclXattr(kAclDefaultXattr, NamedUserAcl(), S_IFREG | 0644, true).status().code(),
            EACCES);
  auto on_dir = SetAclXattr(kAclDefaultXattr, BaseAcl(7, 5, 5), S_IFDIR | 0700, true);
  ASSERT_TRUE(on_dir.ok());
  EXPECT_EQ(on_dir->mode, static_cast<uint32_t>(S_IFDIR | 0700));  // the mode is untouched
  ASSERT_TRUE(on_dir->value.has_value());  // a base-only default ACL still matters
  EXPECT_EQ(SetAclXattr(kAclAccessXattr, NamedUserAcl(), S_IFLNK | 0777, true).status().code(),
            EOPNOTSUPP);
  auto removed = SetAclXattr(kAclDefaultXattr, "", S_IFDIR | 0700, true);
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(removed->value.has_value());
  EXPECT_EQ(SetAclXattr(kAclAccessXattr, "junk", S_IFREG | 0644, true).status().code(), EINVAL);
}

TEST(PosixAclRules, ChmodRewritesOwnerMaskAndOther) {
  auto updated = ChmodAccessAcl(NamedUserAcl(), S_IFREG | 0600);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(EntryOf(*updated, kAclUserObj).perm, 6);
  EXPECT_EQ(EntryOf(*updated, kAclMask).perm, 0);
  EXPECT_EQ(EntryOf(*updated, kAclGroupObj).perm, 4);  // under the mask: kept
  EXPECT_EQ(EntryOf(*updated, kAclUser), (AclEntry{kAclUser, 7, 1234}));
  EXPECT_EQ(EntryOf(*updated, kAclOther).perm, 0);
  // Without a mask the group bits go to GROUP_OBJ.
  auto base = ChmodAccessAcl(BaseAcl(7, 7, 7), S_IFREG | 0751);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(*base, BaseAcl(7, 5, 1));
  EXPECT_EQ(ChmodAccessAcl("corrupt", 0644).status().code(), EIO);
}

TEST(PosixAclRules, CreateMasksTheDefaultAclByTheRequestedMode) {
  // default: user::rwx user:1234:rwx group::r-x mask::rwx other::r-x
  std::string parent_default = Xattr({{kAclUserObj, 7, kNone},
                                      {kAclUser, 7, 1234},
                                      {kAclGroupObj, 5, kNone},
                                      {kAclMask, 7, kNone},
                                      {kAclOther, 5, kNone}});
  auto file = InheritDefaultAcl(parent_default, S_IFREG | 0666);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->mode, static_cast<uint32_t>(S_IFREG | 0664));
  EXPECT_TRUE(file->default_acl.empty());
  EXPECT_EQ(file->access, Xattr({{kAclUserObj, 6, kNone},
                                 {kAclUser, 7, 1234},
                                 {kAclGroupObj, 5, kNone},
                                 {kAclMask, 6, kNone},
                                 {kAclOther, 4, kNone}}));
  auto dir = InheritDefaultAcl(parent_default, S_IFDIR | 02777);
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir->mode, static_cast<uint32_t>(S_IFDIR | 02775));  // special bits pass through
  EXPECT_EQ(dir->default_acl, parent_default);
  EXPECT_EQ(EntryOf(dir->access, kAclMask).perm, 7);
  // A base-only default ACL yields no access ACL, only the masked mode.
  auto plain = InheritDefaultAcl(BaseAcl(7, 0, 0), S_IFREG | 0644);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_TRUE(plain->access.empty());
  EXPECT_EQ(InheritDefaultAcl("corrupt", S_IFREG | 0644).status().code(), EIO);
}

// ---------------------------------------------------------------- MetaStore

class PosixAclStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sealfs-acl-test-XXXXXX";
    dir_ = mkdtemp(pattern);
    MetaStoreOptions options;
    options.path = dir_ + "/db";
    auto opened = MetaStore::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(*opened);
    auto volume = store_->CreateVolume("vol", 0, 0);
    ASSERT_TRUE(volume.ok()) << volume.status().ToString();
    root_ = volume->root_ino();
    caller_.set_uid(1000);
    caller_.set_gid(1000);
    caller_.set_umask(022);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  pb::Inode File(uint64_t parent, const std::string& name, uint32_t mode) {
    auto inode = store_->Mknod(parent, name, S_IFREG | mode, 0, caller_, {1});
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? *inode : pb::Inode{};
  }
  pb::Inode Dir(uint64_t parent, const std::string& name, uint32_t mode) {
    auto inode = store_->Mkdir(parent, name, mode, caller_);
    EXPECT_TRUE(inode.ok()) << name << ": " << inode.status().ToString();
    return inode.ok() ? *inode : pb::Inode{};
  }
  uint32_t Mode(uint64_t ino) {
    auto inode = store_->Getattr(ino);
    EXPECT_TRUE(inode.ok());
    return inode.ok() ? inode->attr().mode() : 0;
  }
  Status Chmod(uint64_t ino, uint32_t mode) {
    pb::SetattrRequest request;
    request.set_ino(ino);
    request.set_valid(pb::SETATTR_MODE);
    request.set_mode(mode);
    return store_->Setattr(request).status();
  }
  std::string Access(uint64_t ino) { return Get(ino, kAclAccessXattr); }
  std::string Default(uint64_t ino) { return Get(ino, kAclDefaultXattr); }
  std::string Get(uint64_t ino, std::string_view name) {
    auto value = store_->Getxattr(ino, std::string(name));
    return value.ok() ? *value : "<" + std::to_string(value.status().code()) + ">";
  }
  const std::string kMissing = "<" + std::to_string(ENODATA) + ">";

  std::string dir_;
  std::unique_ptr<MetaStore> store_;
  uint64_t root_ = 0;
  pb::Caller caller_;
};

TEST_F(PosixAclStoreTest, SettingAnAccessAclUpdatesTheModeAndCtime) {
  pb::Inode file = File(root_, "f", 0644);
  uint64_t ino = file.attr().ino();
  ASSERT_TRUE(store_->Setxattr(ino, std::string(kAclAccessXattr), NamedUserAcl(), 0).ok());
  EXPECT_EQ(Mode(ino), static_cast<uint32_t>(S_IFREG | 0674));
  EXPECT_EQ(Access(ino), NamedUserAcl());
  EXPECT_EQ(store_->Getattr(ino)->attr().xattrs(), 1u);  // clients answer "none" from 0
  EXPECT_GT(store_->Getattr(ino)->attr().ctime_ns(), file.attr().ctime_ns());
  // Back to an ACL the mode can say: the xattr goes away, the mode stays exact.
  ASSERT_TRUE(store_->Setxattr(ino, std::string(kAclAccessXattr), BaseAcl(6, 0, 0), 0).ok());
  EXPECT_EQ(Mode(ino), static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(Access(ino), kMissing);
  EXPECT_EQ(store_->Getattr(ino)->attr().xattrs(), 0u);
}

TEST_F(PosixAclStoreTest, MalformedAclsAreRejectedAndChangeNothing) {
  uint64_t ino = File(root_, "f", 0644).attr().ino();
  std::string bad = NamedUserAcl();
  bad[0] = 3;  // version
  EXPECT_EQ(store_->Setxattr(ino, std::string(kAclAccessXattr), bad, 0).code(), EINVAL);
  EXPECT_EQ(store_->Setxattr(ino, std::string(kAclAccessXattr), "abc", 0).code(), EINVAL);
  EXPECT_EQ(Mode(ino), static_cast<uint32_t>(S_IFREG | 0644));
  EXPECT_EQ(Access(ino), kMissing);
  EXPECT_EQ(store_->Setxattr(ino, std::string(kAclDefaultXattr), NamedUserAcl(), 0).code(), EACCES);
}

TEST_F(PosixAclStoreTest, ChmodRewritesTheStoredAccessAcl) {
  uint64_t ino = File(root_, "f", 0644).attr().ino();
  ASSERT_TRUE(store_->Setxattr(ino, std::string(kAclAccessXattr), NamedUserAcl(), 0).ok());
  ASSERT_TRUE(Chmod(ino, 0600).ok());
  EXPECT_EQ(Mode(ino), static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(EntryOf(Access(ino), kAclMask).perm, 0);
  EXPECT_EQ(EntryOf(Access(ino), kAclUser).perm, 7);
  EXPECT_EQ(EntryOf(Access(ino), kAclOther).perm, 0);
  // chmod of a file without an ACL creates none.
  uint64_t plain = File(root_, "g", 0644).attr().ino();
  ASSERT_TRUE(Chmod(plain, 0600).ok());
  EXPECT_EQ(Access(plain), kMissing);
}

TEST_F(PosixAclStoreTest, NewNodesInheritTheDefaultAclAndIgnoreTheUmask) {
  uint64_t parent = Dir(root_, "d", 0755).attr().ino();
  std::string parent_default = Xattr({{kAclUserObj, 7, kNone},
                                      {kAclUser, 7, 1234},
                                      {kAclGroupObj, 5, kNone},
                                      {kAclMask, 7, kNone},
                                      {kAclOther, 5, kNone}});
  ASSERT_TRUE(store_->Setxattr(parent, std::string(kAclDefaultXattr), parent_default, 0).ok());
  EXPECT_EQ(Default(parent), parent_default);
  EXPECT_EQ(Mode(parent), static_cast<uint32_t>(S_IFDIR | 0755));  // default ACLs leave the mode
  caller_.set_umask(077);

  pb::Inode file = File(parent, "f", 0666);
  EXPECT_EQ(file.attr().mode(), static_cast<uint32_t>(S_IFREG | 0664));
  EXPECT_EQ(EntryOf(Access(file.attr().ino()), kAclUser), (AclEntry{kAclUser, 7, 1234}));
  EXPECT_EQ(EntryOf(Access(file.attr().ino()), kAclMask).perm, 6);
  EXPECT_EQ(Default(file.attr().ino()), kMissing);
  EXPECT_EQ(file.attr().xattrs(), 1u);

  pb::Inode sub = Dir(parent, "sub", 0777);
  EXPECT_EQ(sub.attr().mode(), static_cast<uint32_t>(S_IFDIR | 0775));
  EXPECT_EQ(Default(sub.attr().ino()), parent_default);
  EXPECT_EQ(EntryOf(Access(sub.attr().ino()), kAclMask).perm, 7);
  EXPECT_EQ(sub.attr().xattrs(), 2u);

  // Symlinks take no ACL.
  auto link = store_->Symlink(parent, "l", "f", caller_);
  ASSERT_TRUE(link.ok());
  EXPECT_EQ(link->attr().mode(), static_cast<uint32_t>(S_IFLNK | 0777));
  EXPECT_EQ(Access(link->attr().ino()), kMissing);
  EXPECT_EQ(link->attr().xattrs(), 0u);

  // Removing the default ACL brings the umask back.
  ASSERT_TRUE(store_->Removexattr(parent, std::string(kAclDefaultXattr)).ok());
  EXPECT_EQ(store_->Getattr(parent)->attr().xattrs(), 0u);
  EXPECT_EQ(File(parent, "g", 0666).attr().mode(), static_cast<uint32_t>(S_IFREG | 0600));
}

TEST_F(PosixAclStoreTest, WithoutADefaultAclTheUmaskApplies) {
  EXPECT_EQ(File(root_, "f", 0666).attr().mode(), static_cast<uint32_t>(S_IFREG | 0644));
  EXPECT_EQ(Dir(root_, "d", 0777).attr().mode(), static_cast<uint32_t>(S_IFDIR | 0755));
  EXPECT_EQ(Access(File(root_, "g", 0666).attr().ino()), kMissing);
}

TEST_F(PosixAclStoreTest, SettingAnAccessAclClearsSetgidForCallersOutsideTheGroup) {
  uint64_t ino = File(root_, "f", 02755).attr().ino();  // owned by group 1000
  XattrCaller outsider{1000, 7, {8, 9}};
  ASSERT_TRUE(
      store_->Setxattr(ino, std::string(kAclAccessXattr), NamedUserAcl(), 0, &outsider).ok());
  EXPECT_EQ(Mode(ino) & S_ISGID, 0u);

  uint64_t kept = File(root_, "g", 02755).attr().ino();
  XattrCaller member{1000, 7, {1000}};
  ASSERT_TRUE(
      store_->Setxattr(kept, std::string(kAclAccessXattr), NamedUserAcl(), 0, &member).ok());
  EXPECT_EQ(Mode(kept), static_cast<uint32_t>(S_IFREG | 02674));
  // Without a caller (a client that does not send one) the bit is left alone.
  uint64_t unknown = File(root_, "h", 02755).attr().ino();
  ASSERT_TRUE(store_->Setxattr(unknown, std::string(kAclAccessXattr), NamedUserAcl(), 0).ok());
  EXPECT_NE(Mode(unknown) & S_ISGID, 0u);
}

}  // namespace
}  // namespace sealfs::metadata
