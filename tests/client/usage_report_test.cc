// The usage report's arithmetic (step integral, tail cap, periods, peaks,
// counter growth and resets), its three output formats and time arguments.
#include "usage_report.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sealfs::cli {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr int64_t kMinute = 60 * kNsPerSecond;
constexpr int64_t kMay1 = 1714521600LL * kNsPerSecond;  // 2024-05-01T00:00:00Z
constexpr int64_t kMay1At10 = kMay1 + 10 * kNsPerHour;

UsageSample Sample(int64_t time_ns, uint64_t used_bytes, uint64_t used_inodes = 0) {
  UsageSample sample;
  sample.time_ns = time_ns;
  sample.used_bytes = used_bytes;
  sample.used_inodes = used_inodes;
  return sample;
}

// A sample every `step` in [from, to], all with the same usage.
std::vector<UsageSample> Steady(int64_t from, int64_t to, int64_t step, uint64_t used_bytes,
                                uint64_t used_inodes = 0) {
  std::vector<UsageSample> samples;
  for (int64_t t = from; t <= to; t += step) samples.push_back(Sample(t, used_bytes, used_inodes));
  return samples;
}

VolumeSamples Volume(std::vector<UsageSample> samples, std::string name = "vol",
                     std::string tenant = "acme") {
  return VolumeSamples{std::move(name), std::move(tenant), std::move(samples)};
}

TEST(UsageIntegrateTest, OneGiBHeldForTwoHoursIsTwoGiBHours) {
  auto volume =
      Volume(Steady(kMay1At10, kMay1At10 + 2 * kNsPerHour, kMinute, kGiB, /*used_inodes=*/1000));
  auto rows = Integrate(volume, kMay1At10, kMay1At10 + 2 * kNsPerHour, 0);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].volume, "vol");
  EXPECT_EQ(rows[0].tenant, "acme");
  EXPECT_EQ(rows[0].from_ns, kMay1At10);
  EXPECT_EQ(rows[0].to_ns, kMay1At10 + 2 * kNsPerHour);
  EXPECT_EQ(rows[0].gib_hours, 2.0);  // exact, not approximately
  EXPECT_EQ(rows[0].inode_hours, 2000.0);
  EXPECT_EQ(rows[0].peak_bytes, kGiB);

  // Two samples two hours apart: the first holds until the second.
  auto sparse = Volume({Sample(kMay1At10, kGiB), Sample(kMay1At10 + 2 * kNsPerHour, kGiB)});
  EXPECT_EQ(Integrate(sparse, kMay1At10, kMay1At10 + 2 * kNsPerHour, 0)[0].gib_hours, 2.0);
}

TEST(UsageIntegrateTest, StepUpMidPeriod) {
  auto volume = Volume({Sample(kMay1At10, kGiB, 10), Sample(kMay1At10 + 30 * kMinute, 3 * kGiB, 30),
                        Sample(kMay1At10 + 60 * kMinute, 3 * kGiB, 30)});
  auto rows = Integrate(volume, kMay1At10, kMay1At10 + kNsPerHour, 0);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].gib_hours, 0.5 * 1 + 0.5 * 3);
  EXPECT_EQ(rows[0].inode_hours, 0.5 * 10 + 0.5 * 30);
  EXPECT_EQ(rows[0].peak_bytes, 3 * kGiB);
}

TEST(UsageIntegrateTest, SplitsAtUtcHourBoundaries) {
  auto volume = Volume(Steady(kMay1 + 9 * kNsPerHour, kMay1 + 13 * kNsPerHour, kMinute, 2 * kGiB));
  int64_t from = kMay1 + 10 * kNsPerHour + 30 * kMinute;  // 10:30
  int64_t to = kMay1 + 12 * kNsPerHour + 15 * kMinute;    // 12:15
  auto rows = Integrate(volume, from, to, kNsPerHour);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].from_ns, from);
  EXPECT_EQ(rows[0].to_ns, kMay1 + 11 * kNsPerHour);
  EXPECT_EQ(rows[1].from_ns, kMay1 + 11 * kNsPerHour);
  EXPECT_EQ(rows[1].to_ns, kMay1 + 12 * kNsPerHour);
  EXPECT_EQ(rows[2].from_ns, kMay1 + 12 * kNsPerHour);
  EXPECT_EQ(rows[2].to_ns, to);
  EXPECT_EQ(rows[0].gib_hours, 1.0);
  EXPECT_EQ(rows[1].gib_hours, 2.0);
  EXPECT_EQ(rows[2].gib_hours, 0.5);
  for (const UsageRow& row : rows) EXPECT_EQ(row.peak_bytes, 2 * kGiB);
}

TEST(UsageIntegrateTest, SplitsAtUtcMidnight) {
  auto volume = Volume(Steady(kMay1, kMay1 + 3 * kNsPerDay, kNsPerHour, kGiB));
  int64_t from = kMay1 + 18 * kNsPerHour;            // May 1, 18:00
  int64_t to = kMay1 + kNsPerDay + 30 * kNsPerHour;  // May 3, 06:00
  auto rows = Integrate(volume, from, to, kNsPerDay);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].to_ns, kMay1 + kNsPerDay);
  EXPECT_EQ(rows[1].to_ns, kMay1 + 2 * kNsPerDay);
  EXPECT_EQ(rows[0].gib_hours, 6.0);
  EXPECT_EQ(rows[1].gib_hours, 24.0);
  EXPECT_EQ(rows[2].gib_hours, 6.0);
}

TEST(UsageIntegrateTest, PeriodsBeforeTheEpochAlignToo) {
  auto rows = Integrate(Volume({}), -90 * kMinute, 30 * kMinute, kNsPerHour);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].to_ns, -kNsPerHour);
  EXPECT_EQ(rows[1].to_ns, 0);
  EXPECT_EQ(rows[2].to_ns, 30 * kMinute);
}

TEST(UsageIntegrateTest, PeakIncludesTheValueInForceAtStart) {
  // 2 GiB at 9:40, 5 GiB at 9:50, then 1 GiB every 10 min from 10:10 to 11:30.
  std::vector<UsageSample> samples = {Sample(kMay1 + 9 * kNsPerHour + 40 * kMinute, 2 * kGiB),
                                      Sample(kMay1 + 9 * kNsPerHour + 50 * kMinute, 5 * kGiB)};
  for (int64_t t = kMay1At10 + 10 * kMinute; t <= kMay1At10 + 90 * kMinute; t += 10 * kMinute) {
    samples.push_back(Sample(t, kGiB));
  }
  auto rows =
      Integrate(Volume(samples), kMay1 + 9 * kNsPerHour, kMay1 + 12 * kNsPerHour, kNsPerHour);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].peak_bytes, 5 * kGiB);
  EXPECT_DOUBLE_EQ(rows[0].gib_hours, (10.0 * 2 + 10.0 * 5) / 60);
  EXPECT_EQ(rows[1].peak_bytes, 5 * kGiB);  // in force from 9:50 to 10:10
  EXPECT_DOUBLE_EQ(rows[1].gib_hours, (10.0 * 5 + 50.0 * 1) / 60);
  EXPECT_EQ(rows[2].peak_bytes, kGiB);
  // Median gap 10 min: the 11:30 sample holds 20 min, to 11:50.
  EXPECT_DOUBLE_EQ(rows[2].gib_hours, 50.0 / 60);
}

TEST(UsageIntegrateTest, CounterGrowthGoesToThePeriodOfTheLaterSample) {
  auto at = [](int hour, int minute, uint64_t bytes_read, uint64_t write_ops) {
    UsageSample sample = Sample(kMay1 + hour * kNsPerHour + minute * kMinute, kGiB);
    sample.bytes_read = bytes_read;
    sample.bytes_written = 2 * bytes_read;
    sample.read_ops = bytes_read / 10;
    sample.write_ops = write_ops;
    return sample;
  };
  // The first sample is the baseline; 11:01 is a reset (50 < 300) that counts from zero.
  auto volume =
      Volume({at(10, 58, 100, 7), at(10, 59, 300, 9), at(11, 1, 50, 20), at(11, 2, 80, 25)});
  auto rows = Integrate(volume, kMay1At10, kMay1 + 12 * kNsPerHour, kNsPerHour);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].bytes_read, 200u);
  EXPECT_EQ(rows[0].bytes_written, 400u);
  EXPECT_EQ(rows[0].read_ops, 20u);
  EXPECT_EQ(rows[0].write_ops, 2u);
  EXPECT_EQ(rows[1].bytes_read, 50u + 30u);
  EXPECT_EQ(rows[1].bytes_written, 100u + 60u);
  EXPECT_EQ(rows[1].read_ops, 5u + 3u);
  EXPECT_EQ(rows[1].write_ops, 11u + 5u);

  // A sample before `from` is the baseline of the first one inside.
  auto late = Integrate(volume, kMay1 + 11 * kNsPerHour, kMay1 + 12 * kNsPerHour, 0);
  EXPECT_EQ(late[0].bytes_read, 80u);
  // A sample at `to` belongs to the next report.
  auto early = Integrate(volume, kMay1At10, kMay1At10 + 59 * kMinute, 0);
  EXPECT_EQ(early[0].bytes_read, 0u);
}

TEST(UsageIntegrateTest, LastSampleHoldsForTwiceTheMedianSpacing) {
  auto volume = Volume(Steady(kMay1At10, kMay1At10 + 10 * kMinute, kMinute, kGiB));
  auto rows = Integrate(volume, kMay1At10, kMay1At10 + kNsPerHour, 0);
  EXPECT_DOUBLE_EQ(rows[0].gib_hours, 12.0 / 60);  // to 10:12, not 11:00
  // `to` before the cap ends the hold.
  EXPECT_DOUBLE_EQ(Integrate(volume, kMay1At10, kMay1At10 + 11 * kMinute, 0)[0].gib_hours,
                   11.0 / 60);
  // Nothing is billed once the hold is over.
  auto after = Integrate(volume, kMay1At10 + 20 * kMinute, kMay1At10 + kNsPerHour, 0);
  EXPECT_EQ(after[0].gib_hours, 0.0);
  EXPECT_EQ(after[0].peak_bytes, 0u);

  auto single = Volume({Sample(kMay1At10, kGiB, 60)});
  auto one = Integrate(single, kMay1At10 - kNsPerHour, kMay1At10 + kNsPerHour, 0);
  EXPECT_DOUBLE_EQ(one[0].gib_hours, 1.0 / 60);  // 60 s
  EXPECT_DOUBLE_EQ(one[0].inode_hours, 1.0);
}

TEST(UsageIntegrateTest, NothingBeforeTheFirstSample) {
  auto volume = Volume(Steady(kMay1At10, kMay1At10 + kNsPerHour, kMinute, kGiB));
  auto rows = Integrate(volume, kMay1 + 9 * kNsPerHour, kMay1 + 11 * kNsPerHour, kNsPerHour);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].gib_hours, 0.0);
  EXPECT_EQ(rows[0].peak_bytes, 0u);
  EXPECT_EQ(rows[1].gib_hours, 1.0);
}

TEST(UsageIntegrateTest, NoSamplesGiveZeroRowsAndAnEmptyRangeNoRows) {
  auto rows =
      Integrate(Volume({}, "empty", "t"), kMay1At10, kMay1At10 + 3 * kNsPerHour, kNsPerHour);
  ASSERT_EQ(rows.size(), 3u);
  for (const UsageRow& row : rows) {
    EXPECT_EQ(row.volume, "empty");
    EXPECT_EQ(row.tenant, "t");
    EXPECT_EQ(row.gib_hours, 0.0);
    EXPECT_EQ(row.inode_hours, 0.0);
    EXPECT_EQ(row.peak_bytes, 0u);
    EXPECT_EQ(row.bytes_read + row.bytes_written + row.read_ops + row.write_ops, 0u);
  }
  EXPECT_TRUE(Integrate(Volume({}), kMay1At10, kMay1At10, kNsPerHour).empty());
  EXPECT_TRUE(Integrate(Volume({Sample(kMay1At10, kGiB)}), kMay1At10, kMay1, 0).empty());
}

TEST(UsageIntegrateTest, UnsortedSamplesAreSortedAndEqualTimesKeepTheLast) {
  auto volume = Volume({Sample(kMay1At10 + 30 * kMinute, 3 * kGiB), Sample(kMay1At10, 7 * kGiB),
                        Sample(kMay1At10, kGiB), Sample(kMay1At10 + 60 * kMinute, kGiB)});
  auto rows = Integrate(volume, kMay1At10, kMay1At10 + kNsPerHour, 0);
  EXPECT_EQ(rows[0].gib_hours, 2.0);        // 30 min of 1 GiB, 30 min of 3 GiB
  EXPECT_EQ(rows[0].peak_bytes, 7 * kGiB);  // recorded, if for no time
}

TEST(UsageIntegrateTest, HugeValuesDoNotOverflow) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  auto volume = Volume(Steady(kMay1At10, kMay1At10 + kNsPerHour, kMinute, kMax, kMax));
  auto rows = Integrate(volume, kMay1At10, kMay1At10 + kNsPerHour, 0);
  EXPECT_DOUBLE_EQ(rows[0].gib_hours, 17179869184.0);  // 2^64 / 2^30
  EXPECT_DOUBLE_EQ(rows[0].inode_hours, 18446744073709551616.0);
  EXPECT_EQ(rows[0].peak_bytes, kMax);
  // The widest range there is: still one finite answer.
  auto all = Integrate(volume, std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max(), 0);
  EXPECT_DOUBLE_EQ(all[0].gib_hours, 17179869184.0 * 62 / 60);  // 60 min + 2 min hold
}

TEST(UsageTotalsTest, SumsPerTenantAndPeriod) {
  int64_t from = kMay1At10, to = kMay1At10 + 2 * kNsPerHour;
  std::vector<UsageRow> rows;
  for (auto [name, tenant, gib] :
       {std::tuple{"a1", "alpha", 1}, std::tuple{"b1", "beta", 4}, std::tuple{"a2", "alpha", 2}}) {
    auto samples = Steady(from, to, kMinute, gib * kGiB, 10);
    samples[samples.size() - 2].bytes_read = 1000;  // at 11:59; the 12:00 sample is past `to`
    auto part = Integrate(Volume(samples, name, tenant), from, to, kNsPerHour);
    rows.insert(rows.end(), part.begin(), part.end());
  }
  auto totals = TotalsByTenant(rows);
  ASSERT_EQ(totals.size(), 4u);
  EXPECT_EQ(totals[0].tenant, "alpha");
  EXPECT_EQ(totals[0].volume, "*");
  EXPECT_EQ(totals[0].from_ns, from);
  EXPECT_EQ(totals[0].gib_hours, 3.0);
  EXPECT_EQ(totals[0].peak_bytes, 3 * kGiB);
  EXPECT_EQ(totals[0].inode_hours, 20.0);
  EXPECT_EQ(totals[0].bytes_read, 0u);
  EXPECT_EQ(totals[1].tenant, "alpha");
  EXPECT_EQ(totals[1].from_ns, from + kNsPerHour);
  EXPECT_EQ(totals[1].bytes_read, 2000u);
  EXPECT_EQ(totals[2].tenant, "beta");
  EXPECT_EQ(totals[2].gib_hours, 4.0);
  EXPECT_EQ(totals[3].tenant, "beta");
  EXPECT_EQ(totals[3].bytes_read, 1000u);
  EXPECT_TRUE(TotalsByTenant({}).empty());
}

UsageRow SampleRow() {
  UsageRow row;
  row.tenant = "acme";
  row.volume = "home";
  row.from_ns = kMay1At10;
  row.to_ns = kMay1At10 + kNsPerHour;
  row.gib_hours = 2.5;
  row.peak_bytes = 3 * kGiB / 2;
  row.inode_hours = 10;
  row.bytes_read = 1;
  row.bytes_written = 2;
  row.read_ops = 3;
  row.write_ops = 4;
  return row;
}

TEST(UsageFormatTest, CsvQuotesPerRfc4180) {
  UsageRow row = SampleRow();
  row.volume = "a,\"b\"";
  row.tenant = "t\nx";
  EXPECT_EQ(FormatCsv({row, SampleRow()}),
            "tenant,volume,from,to,gib_hours,peak_bytes,inode_hours,bytes_read,bytes_written,"
            "read_ops,write_ops\r\n"
            "\"t\nx\",\"a,\"\"b\"\"\",2024-05-01T10:00:00Z,2024-05-01T11:00:00Z,2.5,1610612736,"
            "10,1,2,3,4\r\n"
            "acme,home,2024-05-01T10:00:00Z,2024-05-01T11:00:00Z,2.5,1610612736,10,1,2,3,4\r\n");
}

TEST(UsageFormatTest, CsvDoublesParseBackExactly) {
  UsageRow row = SampleRow();
  row.gib_hours = 1.0 / 60;
  std::string csv = FormatCsv({row});
  std::string line = csv.substr(csv.find("\r\n") + 2);
  std::stringstream fields(line);
  std::string field;
  for (int i = 0; i < 5; ++i) std::getline(fields, field, ',');
  EXPECT_EQ(std::stod(field), 1.0 / 60);
}

TEST(UsageFormatTest, JsonParsesBackWithTheSameNumbers) {
  auto volume =
      Volume(Steady(kMay1At10, kMay1At10 + 10 * kMinute, kMinute, kGiB + 1, 7), "v\"1", "acme");
  volume.samples.back().bytes_read = (uint64_t{1} << 63) + 1;  // beyond a double's precision
  auto rows = Integrate(volume, kMay1At10 + 30 * kNsPerSecond, kMay1At10 + kNsPerHour, 0);
  rows.push_back(SampleRow());
  auto json = nlohmann::json::parse(FormatJson(rows));
  ASSERT_TRUE(json.is_array());
  ASSERT_EQ(json.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& object = json[i];
    EXPECT_EQ(object.at("tenant").get<std::string>(), rows[i].tenant);
    EXPECT_EQ(object.at("volume").get<std::string>(), rows[i].volume);
    EXPECT_EQ(object.at("gib_hours").get<double>(), rows[i].gib_hours);
    EXPECT_EQ(object.at("inode_hours").get<double>(), rows[i].inode_hours);
    EXPECT_EQ(object.at("peak_bytes").get<uint64_t>(), rows[i].peak_bytes);
    EXPECT_EQ(object.at("bytes_read").get<uint64_t>(), rows[i].bytes_read);
    EXPECT_EQ(object.at("bytes_written").get<uint64_t>(), rows[i].bytes_written);
    EXPECT_EQ(object.at("read_ops").get<uint64_t>(), rows[i].read_ops);
    EXPECT_EQ(object.at("write_ops").get<uint64_t>(), rows[i].write_ops);
    EXPECT_EQ(ParseTimeArgument(object.at("from").get<std::string>(), 0).value(), rows[i].from_ns);
    EXPECT_EQ(ParseTimeArgument(object.at("to").get<std::string>(), 0).value(), rows[i].to_ns);
  }
  EXPECT_EQ(json[0].at("bytes_read").get<uint64_t>(), (uint64_t{1} << 63) + 1);
  EXPECT_EQ(json[0].at("from").get<std::string>(), "2024-05-01T10:00:30Z");
  EXPECT_EQ(json[1].at("peak_bytes").get<uint64_t>(), 3 * kGiB / 2);

  EXPECT_EQ(FormatJson({}), "[]\n");
  UsageRow bad = SampleRow();
  bad.volume = "\xff\xfe";  // not UTF-8: replaced, not thrown
  EXPECT_NO_THROW(nlohmann::json::parse(FormatJson({bad})));
}

TEST(UsageFormatTest, TableAlignsColumnsWithReadableTimesAndSizes) {
  UsageRow wide = SampleRow();
  wide.volume = "a-much-longer-volume\x1b[31m";
  wide.bytes_read = 5 * kGiB;
  std::string table = FormatTable({SampleRow(), wide});
  std::vector<std::string> lines;
  std::stringstream stream(table);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("TENANT  VOLUME", 0), 0u);
  // The last column is right-aligned, so every line has the same width.
  EXPECT_EQ(lines[1].size(), lines[0].size());
  EXPECT_EQ(lines[2].size(), lines[0].size());
  EXPECT_NE(lines[1].find("2024-05-01T10:00:00Z  2024-05-01T11:00:00Z"), std::string::npos);
  EXPECT_NE(lines[1].find("2.500"), std::string::npos);
  EXPECT_NE(lines[1].find("1.5 GiB"), std::string::npos);
  EXPECT_NE(lines[1].find("1 B"), std::string::npos);
  EXPECT_NE(lines[2].find("5.0 GiB"), std::string::npos);
  EXPECT_NE(lines[2].find("a-much-longer-volume?[31m"), std::string::npos);
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  // Columns line up: the FROM column starts at the same offset on each line.
  size_t from_column = lines[0].find("FROM");
  EXPECT_EQ(lines[1].find("2024-05-01T10"), from_column);
  EXPECT_EQ(lines[2].find("2024-05-01T10"), from_column);
}

TEST(UsageFormatTest, UtcTimes) {
  EXPECT_EQ(FormatUtcTime(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatUtcTime(-1), "1969-12-31T23:59:59.999999999Z");
  EXPECT_EQ(FormatUtcTime(kMay1 + 13 * kNsPerHour + 5 * kMinute + 7 * kNsPerSecond + 250),
            "2024-05-01T13:05:07.000000250Z");
}

TEST(UsageTimeArgumentTest, RelativeAndNow) {
  const int64_t now = kMay1At10;
  EXPECT_EQ(ParseTimeArgument("now", now).value(), now);
  EXPECT_EQ(ParseTimeArgument("-2h", now).value(), now - 2 * kNsPerHour);
  EXPECT_EQ(ParseTimeArgument("-30m", now).value(), now - 30 * kMinute);
  EXPECT_EQ(ParseTimeArgument("-7d", now).value(), now - 7 * kNsPerDay);
  EXPECT_EQ(ParseTimeArgument("-90s", now).value(), now - 90 * kNsPerSecond);
  EXPECT_EQ(ParseTimeArgument("-0h", now).value(), now);
  EXPECT_EQ(ParseTimeArgument("-999999999999999999d", now).status().code(), ERANGE);
}

TEST(UsageTimeArgumentTest, AbsoluteUtc) {
  auto parse = [](std::string_view text) { return ParseTimeArgument(text, 0).value(); };
  EXPECT_EQ(parse("2024-05-01"), kMay1);
  EXPECT_EQ(parse("2024-05-01Z"), kMay1);
  EXPECT_EQ(parse("2024-05-01T10:30"), kMay1At10 + 30 * kMinute);
  EXPECT_EQ(parse("2024-05-01T10:30Z"), kMay1At10 + 30 * kMinute);
  EXPECT_EQ(parse("2024-05-01T10:30:15Z"), kMay1At10 + 30 * kMinute + 15 * kNsPerSecond);
  EXPECT_EQ(parse("2024-05-01 10:30:15"), kMay1At10 + 30 * kMinute + 15 * kNsPerSecond);
  EXPECT_EQ(parse("2024-05-01t10:30:15.25z"),
            kMay1At10 + 30 * kMinute + 15 * kNsPerSecond + 250'000'000);
  EXPECT_EQ(parse("2024-05-01T12:30:00+02:00"), kMay1At10 + 30 * kMinute);
  EXPECT_EQ(parse("2024-05-01T05:00:00-05:00"), kMay1At10);
  EXPECT_EQ(parse("2024-02-29"), kMay1 - (1 + 31 + 30) * kNsPerDay);  // leap day
  EXPECT_EQ(parse("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse("1969-12-31T23:59:59.999999999Z"), -1);
  EXPECT_EQ(ParseTimeArgument("9999-12-31", 0).status().code(), ERANGE);
}

TEST(UsageTimeArgumentTest, InvalidTextIsEinval) {
  for (std::string_view text : {"",
                                "yesterday",
                                "Now",
                                "-",
                                "-h",
                                "-2",
                                "-2x",
                                "-2hours",
                                "--2h",
                                "+2h",
                                "2024-5-1",
                                "2024-13-01",
                                "2023-02-29",
                                "2024-04-31",
                                "2024-05-01T",
                                "2024-05-01T25:00",
                                "2024-05-01T10:60",
                                "2024-05-01T10:30:60",
                                "2024-05-01T10:30:15.",
                                "2024-05-01T10:30:15.1234567891",
                                "2024-05-01T10:30+2",
                                "2024-05-01T10:30+24:00",
                                "2024-05-01+02:00",
                                "2024-05-01 ",
                                " 2024-05-01",
                                "2024-05-01T10:30ZZ",
                                "1714521600"}) {
    auto result = ParseTimeArgument(text, kMay1);
    EXPECT_FALSE(result.ok()) << text;
    EXPECT_EQ(result.status().code(), EINVAL) << text;
    EXPECT_NE(result.status().message().find("invalid time"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace sealfs::cli
