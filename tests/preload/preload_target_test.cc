// Record files and the directory2 layout, on real files in a temporary
// directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "preload/unix_target.h"

namespace sbx::preload {
namespace {

class UnixTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-preload-target-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_ = std::make_unique<Config>();
    config_->directory_root.set = true;
    std::strcpy(config_->directory_root.path, dir_.c_str());
    config_->directory_root2.set = true;
    std::strcpy(config_->directory_root2.path, dir_.c_str());
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  // Writes `path_text` as record `index` of skbox_dir_<file>.
  void WriteRecord(const char* file, int index, const std::string& path_text, size_t size = 128) {
    const std::string name = dir_ + "/skbox_dir_" + file;
    const int fd = open(name.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    std::string record(size, '\0');
    std::memcpy(record.data(), path_text.data(), std::min(path_text.size(), size));
    ASSERT_EQ(pwrite(fd, record.data(), record.size(), index * 128),
              static_cast<ssize_t>(record.size()));
    close(fd);
  }
  SysResult<UnixAddress> Resolve(UnixTarget t) { return ResolveUnixTarget(t, *config_); }
  static UnixTarget Record(uint16_t file, uint16_t record, uint16_t port) {
    UnixTarget t;
    t.source = UnixTarget::Source::kRecordFile;
    t.a = file;
    t.b = record;
    t.port = port;
    return t;
  }

  std::string dir_;
  std::unique_ptr<Config> config_;
};

TEST(FiveDigitsTest, ZeroPadded) {
  char out[6] = {};
  FormatFiveDigits(0, out);
  EXPECT_STREQ(out, "00000");
  FormatFiveDigits(80, out);
  EXPECT_STREQ(out, "00080");
  FormatFiveDigits(0x2001, out);
  EXPECT_STREQ(out, "08193");
  FormatFiveDigits(65535, out);
  EXPECT_STREQ(out, "65535");
}

TEST_F(UnixTargetTest, ReadsTheRecordAtItsOffset) {
  WriteRecord("00001", 0, "/run/zero.sock");
  WriteRecord("00001", 3, "/run/three.sock");
  auto r = Resolve(Record(1, 3, 80));
  ASSERT_TRUE(r.ok()) << strerror(r.error());
  EXPECT_EQ(r->path(), "/run/three.sock");
  EXPECT_EQ(r->len, offsetof(sockaddr_un, sun_path) + std::strlen("/run/three.sock"));
  r = Resolve(Record(1, 0, 80));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path(), "/run/zero.sock");
}

TEST_F(UnixTargetTest, FileNumberIsFiveDecimalDigits) {
  WriteRecord("65535", 0, "/run/max.sock");
  auto r = Resolve(Record(0xffff, 0, 80));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path(), "/run/max.sock");
}

TEST_F(UnixTargetTest, PortTokenReplacedOnce) {
  WriteRecord("00000", 0, "/run/web_@SB_.sock_@SB_");
  auto r = Resolve(Record(0, 0, 443));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path(), "/run/web00443.sock_@SB_");
}

TEST_F(UnixTargetTest, FullLengthRecordWithoutNul) {
  const std::string long_path = "/" + std::string(107, 'p');
  WriteRecord("00000", 0, long_path);
  auto r = Resolve(Record(0, 0, 80));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path().size(), 108u);
  EXPECT_EQ(r->len, sizeof(sockaddr_un));
}

TEST_F(UnixTargetTest, ShortFileIsErange) {
  WriteRecord("00000", 0, "/run/a.sock", 100);  // record 0 is 100 bytes long only
  auto r = Resolve(Record(0, 0, 80));
  EXPECT_EQ(r.error(), ERANGE);
  r = Resolve(Record(0, 5, 80));  // past the end
  EXPECT_EQ(r.error(), ERANGE);
}

TEST_F(UnixTargetTest, EmptyRecordIsEnoent) {
  WriteRecord("00000", 1, "/run/one.sock");
  EXPECT_EQ(Resolve(Record(0, 0, 80)).error(), ENOENT);
}

TEST_F(UnixTargetTest, MissingFileAndDirectory) {
  EXPECT_EQ(Resolve(Record(9, 0, 80)).error(), ENOENT);
  std::strcpy(config_->directory_root.path, "/nonexistent-sbx-dir");
  EXPECT_EQ(Resolve(Record(0, 0, 80)).error(), ENOENT);
}

TEST_F(UnixTargetTest, UnreadableRecordFile) {
  const std::string name = dir_ + "/skbox_dir_00002";
  ASSERT_EQ(mkdir(name.c_str(), 0755), 0);  // a directory where a file should be
  EXPECT_EQ(Resolve(Record(2, 0, 80)).error(), EISDIR);
  if (geteuid() != 0) {
    WriteRecord("00003", 0, "/run/x.sock");
    ASSERT_EQ(chmod((dir_ + "/skbox_dir_00003").c_str(), 0), 0);
    EXPECT_EQ(Resolve(Record(3, 0, 80)).error(), EACCES);
  }
}

TEST_F(UnixTargetTest, Directory2Paths) {
  UnixTarget t;
  t.source = UnixTarget::Source::kDirectory2;
  t.a = 0x2001;
  t.b = 7;
  t.port = 80;
  auto r = Resolve(t);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path(), dir_ + "/08193/00007_00080");
  t.x_prefix = true;
  t.a = 4001;
  r = Resolve(t);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->path(), dir_ + "/X4001/00007_00080");
}

TEST_F(UnixTargetTest, Directory2PathLongerThanSunPath) {
  std::strcpy(config_->directory_root2.path, ("/" + std::string(95, 'd')).c_str());
  UnixTarget t;
  t.source = UnixTarget::Source::kDirectory2;
  EXPECT_EQ(Resolve(t).error(), ENAMETOOLONG);  // 96 + 18 bytes > 107
  std::strcpy(config_->directory_root2.path, ("/" + std::string(88, 'd')).c_str());
  EXPECT_TRUE(Resolve(t).ok());  // 89 + 18 = 107: fits with its NUL
}

}  // namespace
}  // namespace sbx::preload
