// Usage report: turns the metadata server's billing ledger samples into rows
// per volume and period, and formats them as a table, JSON or CSV. Pure
// computation: no I/O, no clock; `sealfs usage` fetches the samples.
//
// Semantics of Integrate:
// - Usage (used_bytes, used_inodes) is a step function. A sample's values hold
//   from its time until the next sample's time. Before the first sample the
//   volume did not exist: zero. Of samples with equal times the last one wins.
// - After the last sample its values hold until `to`, but at most for the tail
//   hold: 2 x the median spacing of the samples (over the positive gaps between
//   consecutive samples; with an even count, the mean of the two middle gaps),
//   or 60 s when there is no gap (a single sample). A server that stopped
//   recording is billed for about one missed sample more, not forever; a
//   healthy ledger with its last sample at most one interval old covers `now`.
//   Gaps between samples are not capped: the ledger is durable, so a value
//   recorded before a server restart is still the one in force after it.
// - gib_hours and inode_hours integrate exactly in byte*ns (128-bit integers)
//   and convert once; GiB = 2^30 bytes.
// - peak_bytes: the highest used_bytes in force at any moment of the period,
//   including the value in force at its start, and of any sample recorded in it.
// - Counters (bytes_read, bytes_written, read_ops, write_ops) are cumulative.
//   The growth between two consecutive samples goes to the period holding the
//   later sample; a value lower than the previous one is a counter reset and
//   counts from zero. The first sample is the baseline and adds nothing: what
//   came before it is unknown (a pruned ledger starts mid-life), so the I/O of
//   a volume's first interval after creation is not billed.
// - Periods: [from, to) is cut at multiples of period_ns since the Unix epoch,
//   which for an hour or a day are whole UTC hours or days; the first and last
//   period may be partial. period_ns <= 0 gives one period [from, to).
// - Rows are dense: one row per period, in time order, also for periods (or a
//   whole range) without samples, whose numbers are zero. An empty sample list
//   thus gives zero-valued rows; from >= to gives no rows.
//
// So the caller must pass the samples from the last one at or before `from`
// (usage in force at `from`, counter baseline) up to `to`; earlier ones only
// refine the median spacing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sealfs/rpc/status.h"

namespace sealfs::cli {

inline constexpr int64_t kNsPerSecond = 1'000'000'000;
inline constexpr int64_t kNsPerHour = 3600 * kNsPerSecond;
inline constexpr int64_t kNsPerDay = 24 * kNsPerHour;

// One ledger record of one volume.
struct UsageSample {
  int64_t time_ns = 0;      // wall clock (CLOCK_REALTIME) when recorded
  uint64_t used_bytes = 0;  // quota-counted bytes at that time
  uint64_t used_inodes = 0;
  // Cumulative since the volume was created; lower than the previous sample
  // means the counter was reset.
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t read_ops = 0;
  uint64_t write_ops = 0;
};

struct VolumeSamples {
  std::string volume;
  std::string tenant;
  std::vector<UsageSample> samples;  // sorted by time (Integrate sorts a copy if not)
};

struct UsageRow {
  std::string volume, tenant;
  int64_t from_ns = 0, to_ns = 0;  // the period [from, to)
  double gib_hours = 0;            // integral of used_bytes, GiB*hours
  uint64_t peak_bytes = 0;         // highest used_bytes in force in the period
  double inode_hours = 0;          // integral of used_inodes, inode*hours
  // Growth of the counters within the period (saturating at 2^64-1).
  uint64_t bytes_read = 0, bytes_written = 0, read_ops = 0, write_ops = 0;
};

// One row per period of [from_ns, to_ns); see the semantics above.
std::vector<UsageRow> Integrate(const VolumeSamples& volume, int64_t from_ns, int64_t to_ns,
                                int64_t period_ns);

// Sums rows per tenant and period (volume "*"), ordered by tenant, then time.
// peak_bytes is the sum of the volumes' peaks: an upper bound of the tenant's
// peak, as its volumes need not peak at the same moment.
std::vector<UsageRow> TotalsByTenant(const std::vector<UsageRow>& rows);

// Aligned columns for a terminal: UTC ISO 8601 times, sizes in binary units.
// Control characters in names print as '?'.
std::string FormatTable(const std::vector<UsageRow>& rows);
// An array of objects with exact integers and RFC 3339 UTC times ("from",
// "to"); invalid UTF-8 in names is replaced by U+FFFD.
std::string FormatJson(const std::vector<UsageRow>& rows);
// RFC 4180: a header line, then one line per row, CRLF line ends, fields with
// a comma, quote, CR or LF quoted, quotes doubled; times as in JSON.
std::string FormatCsv(const std::vector<UsageRow>& rows);

// A time argument of `sealfs usage`, in ns since the epoch:
// - "now": now_ns;
// - "-<n>s", "-<n>m", "-<n>h", "-<n>d": that long before now_ns;
// - "YYYY-MM-DD[(T|t| )HH:MM[:SS[.fraction]]][Z|z|(+|-)HH:MM]": UTC unless an
//   offset is given (RFC 3339 with optional seconds); a date alone is midnight.
// EINVAL for anything else (including second 60); ERANGE if not representable.
Result<int64_t> ParseTimeArgument(std::string_view text, int64_t now_ns);

// UTC RFC 3339 ("2024-05-01T10:00:00Z"; nanoseconds only when not zero).
std::string FormatUtcTime(int64_t time_ns);

}  // namespace sealfs::cli
