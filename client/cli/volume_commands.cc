// sealfs volume … and sealfs usage …: the admin's commands for volumes,
// their tokens and quotas, and the billing report.
#include <algorithm>
#include <cstdio>
#include <ctime>

#include "cli_common.h"
#include "sealfs/rpc/credentials.h"
#include "usage_report.h"

namespace sealfs::cli {
namespace {

// Prints a new token once, or writes it to --token-file.
int HandOutToken(const Flags& flags, const std::string& volume, const std::string& token) {
  if (flags.Has("token-file")) {
    Status written = auth::WriteSecretFile(flags.Get("token-file"), token);
    if (!written.ok()) return Fail(written);
    std::printf("mount token of '%s' written to %s\n", volume.c_str(),
                flags.Get("token-file").c_str());
  } else {
    std::printf(
        "mount token of '%s' (shown only now; keep it in a file readable by its owner\n"
        "only, and mount with -o token_file=FILE):\n%s\n",
        volume.c_str(), auth::ToHex(token).c_str());
  }
  return 0;
}

std::string Limit(uint64_t value, bool bytes) {
  if (value == 0) return "-";
  return bytes ? HumanBytes(value) : std::to_string(value);
}

int List(client::Client& admin, const Flags& flags) {
  pb::VolumeListRequest request;
  request.set_tenant(flags.Get("tenant"));
  pb::VolumeListResponse response;
  Status status = admin.Meta(rpc::meta::kVolumeList, request, &response);
  if (!status.ok()) return Fail(status);
  std::printf("%-5s %-28s %-16s %11s %11s %10s %10s %6s %s\n", "ID", "NAME", "TENANT", "USED",
              "QUOTA", "INODES", "MAX", "MOUNTS", "CREATED");
  for (const auto& volume : response.volumes()) {
    time_t created = static_cast<time_t>(volume.created_ns() / 1'000'000'000);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::gmtime(&created));
    std::printf("%-5llu %-28s %-16s %11s %11s %10llu %10s %6u %s\n",
                static_cast<unsigned long long>(volume.id()), volume.name().c_str(),
                volume.tenant().c_str(), HumanBytes(volume.used_bytes()).c_str(),
                Limit(volume.quota_bytes(), true).c_str(),
                static_cast<unsigned long long>(volume.used_inodes()),
                Limit(volume.quota_inodes(), false).c_str(), volume.mounts(), when);
  }
  return 0;
}

// --quota and --inodes, where given; false after printing why on bad input.
bool ParseQuotas(const Flags& flags, std::optional<uint64_t>* bytes,
                 std::optional<uint64_t>* inodes) {
  for (auto [name, out, binary] : {std::tuple{"quota", bytes, true}, {"inodes", inodes, false}}) {
    if (!flags.Has(name)) continue;
    Result<uint64_t> value = ParseCount(flags.Get(name), binary);
    if (!value.ok()) {
      std::fprintf(stderr, "sealfs: --%s: %s\n", name, value.status().message().c_str());
      return false;
    }
    *out = *value;
  }
  return true;
}

}  // namespace

int VolumeCommand(const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() < 2) {
    std::fprintf(stderr,
                 "sealfs: volume needs a command (create, set-quota, list, delete, token)\n");
    return 2;
  }
  const std::string& verb = args[1];
  auto admin = Admin(flags);
  if (!admin.ok()) return Fail(admin.status());
  if (verb == "list") return List(**admin, flags);
  bool token_verb = verb == "token" && args.size() >= 3 && args[2] == "rotate";
  size_t name_at = token_verb ? 3 : 2;
  if (args.size() <= name_at) {
    std::fprintf(stderr, "sealfs: volume %s needs a NAME\n", verb.c_str());
    return 2;
  }
  const std::string& name = args[name_at];
  std::optional<uint64_t> quota_bytes, quota_inodes;
  if (!ParseQuotas(flags, &quota_bytes, &quota_inodes)) return 2;
  if (verb == "create") {
    if (!flags.Has("tenant")) {
      std::fprintf(stderr, "sealfs: volume create needs --tenant T (the volume's owner)\n");
      return 2;
    }
    long long width = flags.GetInt("stripe-width", 0);
    if (width < 0 || width > 16) {
      std::fprintf(stderr, "sealfs: --stripe-width is 1 to 16 chains (0: all, up to 16)\n");
      return 2;
    }
    pb::VolumeCreateRequest request;
    request.set_name(name);
    request.set_tenant(flags.Get("tenant"));
    request.set_stripe_width(static_cast<uint32_t>(width));
    request.set_quota_bytes(quota_bytes.value_or(0));
    request.set_quota_inodes(quota_inodes.value_or(0));
    pb::VolumeCreateResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeCreate, request, &response);
    if (!status.ok()) return Fail(status);
    std::printf("created volume '%s' (id %llu, tenant %s, quota %s, %s inodes)\n", name.c_str(),
                static_cast<unsigned long long>(response.volume().id()),
                response.volume().tenant().c_str(), Limit(request.quota_bytes(), true).c_str(),
                Limit(request.quota_inodes(), false).c_str());
    std::printf("mount it with: sealfs-fuse %s/%s MOUNTPOINT -o token_file=FILE\n",
                MetaAddress(flags).c_str(), name.c_str());
    return HandOutToken(flags, name, response.token());
  }
  if (verb == "set-quota") {
    if (!quota_bytes && !quota_inodes) {
      std::fprintf(stderr, "sealfs: set-quota needs --quota SIZE and/or --inodes N\n");
      return 2;
    }
    pb::VolumeSetQuotaRequest request;
    request.set_name(name);
    if (quota_bytes) request.set_quota_bytes(*quota_bytes);
    if (quota_inodes) request.set_quota_inodes(*quota_inodes);
    pb::VolumeSetQuotaResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeSetQuota, request, &response);
    if (!status.ok()) return Fail(status);
    const pb::Volume& volume = response.volume();
    std::printf("volume '%s': quota %s (%s used), %s inodes (%llu used)\n", name.c_str(),
                Limit(volume.quota_bytes(), true).c_str(), HumanBytes(volume.used_bytes()).c_str(),
                Limit(volume.quota_inodes(), false).c_str(),
                static_cast<unsigned long long>(volume.used_inodes()));
    return 0;
  }
  if (verb == "delete") {
    pb::VolumeDeleteRequest request;
    request.set_name(name);
    request.set_force(flags.Has("force"));
    pb::VolumeDeleteResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeDelete, request, &response);
    if (!status.ok()) return Fail(status);
    std::printf("deleted volume '%s'\n", name.c_str());
    return 0;
  }
  if (token_verb) {
    pb::VolumeRotateTokenRequest request;
    request.set_name(name);
    request.set_end_mounts(flags.Has("end-mounts"));
    pb::VolumeRotateTokenResponse response;
    Status status = (*admin)->Meta(rpc::meta::kVolumeRotateToken, request, &response);
    if (!status.ok()) return Fail(status);
    std::printf("the old token of '%s' no longer mounts it\n", name.c_str());
    return HandOutToken(flags, name, response.token());
  }
  std::fprintf(stderr, "sealfs: unknown volume command '%s'\n", verb.c_str());
  return 2;
}

namespace {

int Verify(client::Client& admin) {
  pb::UsageVerifyResponse response;
  Status status = admin.Meta(rpc::meta::kUsageVerify, pb::UsageVerifyRequest{}, &response);
  if (!status.ok()) return Fail(status);
  int differences = 0;
  std::printf("%-28s %14s %14s %10s %10s %s\n", "VOLUME", "COUNTED_BYTES", "RECORDED_BYTES",
              "COUNTED_IN", "RECORD_IN", "");
  for (const pb::VolumeRecount& volume : response.volumes()) {
    bool same = volume.counted_bytes() == volume.recorded_bytes() &&
                volume.counted_inodes() == volume.recorded_inodes();
    differences += !same;
    std::printf("%-28s %14llu %14llu %10llu %10llu %s\n", volume.volume().c_str(),
                static_cast<unsigned long long>(volume.counted_bytes()),
                static_cast<unsigned long long>(volume.recorded_bytes()),
                static_cast<unsigned long long>(volume.counted_inodes()),
                static_cast<unsigned long long>(volume.recorded_inodes()),
                same ? "ok" : "DIFFERENT");
  }
  if (differences > 0) {
    std::fprintf(stderr, "sealfs: %d volume(s) whose usage counters differ from the namespace\n",
                 differences);
    return 1;
  }
  std::printf("%d volume(s) checked: usage counters match the namespace\n",
              response.volumes_size());
  return 0;
}

}  // namespace

int UsageCommand(const Flags& flags) {
  auto admin = Admin(flags);
  if (!admin.ok()) return Fail(admin.status());
  const auto& args = flags.positional();
  if (args.size() >= 2 && args[1] == "verify") return Verify(**admin);
  if (args.size() >= 2) {
    std::fprintf(stderr, "sealfs: unknown usage command '%s'\n", args[1].c_str());
    return 2;
  }
  int64_t now = auth::WallClockNs();
  Result<int64_t> from = ParseTimeArgument(flags.Get("from", "-24h"), now);
  Result<int64_t> to = ParseTimeArgument(flags.Get("to", "now"), now);
  if (!from.ok() || !to.ok()) {
    std::fprintf(stderr, "sealfs: --from/--to: %s\n",
                 (from.ok() ? to : from).status().message().c_str());
    return 2;
  }
  int64_t period = 0;
  std::string period_name = flags.Get("period");
  if (period_name == "hour") {
    period = kNsPerHour;
  } else if (period_name == "day") {
    period = kNsPerDay;
  } else if (!period_name.empty()) {
    std::fprintf(stderr, "sealfs: --period is hour or day\n");
    return 2;
  }
  pb::UsageRequest request;
  request.set_tenant(flags.Get("tenant"));
  request.set_volume(flags.Get("volume"));
  request.set_from_ns(*from);
  request.set_to_ns(*to);
  pb::UsageResponse response;
  Status status = (*admin)->Meta(rpc::meta::kUsage, request, &response);
  if (!status.ok()) return Fail(status);
  std::vector<UsageRow> rows;
  for (const pb::VolumeLedger& ledger : response.volumes()) {
    VolumeSamples samples{ledger.volume(), ledger.tenant(), {}};
    for (const pb::LedgerSample& s : ledger.samples()) {
      samples.samples.push_back({s.time_ns(), s.used_bytes(), s.used_inodes(), s.bytes_read(),
                                 s.bytes_written(), s.read_ops(), s.write_ops()});
    }
    for (UsageRow& row : Integrate(samples, *from, *to, period)) rows.push_back(std::move(row));
  }
  if (flags.Has("json")) {
    std::fputs(FormatJson(rows).c_str(), stdout);
  } else if (flags.Has("csv")) {
    std::fputs(FormatCsv(rows).c_str(), stdout);
  } else {
    std::fputs(FormatTable(rows).c_str(), stdout);
  }
  return 0;
}

}  // namespace sealfs::cli
