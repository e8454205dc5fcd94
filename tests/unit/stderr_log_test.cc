// The shared logger (socketbox-relay, the inetd tools): the prefix from
// argv[0], one whole line per call even from many threads at once, long
// lines cut rather than split, and a text of several lines one per line.
#include "engine/sys/stderr_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/sys/unique_fd.h"

namespace sbx {
namespace {

// Points fd 2 at a temporary file for the test's lifetime; Lines() reads
// what was written.
class StderrLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/sbx-stderr-log-XXXXXX";
    file_.Reset(::mkstemp(path));
    ASSERT_TRUE(file_);
    ::unlink(path);
    saved_.Reset(::dup(STDERR_FILENO));
    ASSERT_TRUE(saved_);
    ASSERT_EQ(::dup2(file_.get(), STDERR_FILENO), STDERR_FILENO);
    SetLogName("/usr/sbin/sbx-test-prog");
  }
  void TearDown() override { ::dup2(saved_.get(), STDERR_FILENO); }

  std::vector<std::string> Lines() {
    std::string text;
    char buffer[65536];
    ssize_t n;
    off_t offset = 0;
    while ((n = ::pread(file_.get(), buffer, sizeof(buffer), offset)) > 0) {
      text.append(buffer, static_cast<size_t>(n));
      offset += n;
    }
    EXPECT_TRUE(text.empty() || text.back() == '\n') << "a line without its newline";
    std::vector<std::string> lines;
    for (size_t start = 0; start < text.size();) {
      const size_t end = text.find('\n', start);
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return lines;
  }

  UniqueFd file_, saved_;
};

TEST_F(StderrLogTest, PrefixIsTheProgramsNameWithoutItsDirectory) {
  EXPECT_STREQ(LogName(), "sbx-test-prog");
  Log("value %d, %s", 7, "text");
  SetLogName("socketbox-relay");
  Log("second");
  SetLogName("");  // no change
  Log("third");
  EXPECT_EQ(Lines(),
            (std::vector<std::string>{"sbx-test-prog: value 7, text", "socketbox-relay: second",
                                      "socketbox-relay: third"}));
}

TEST_F(StderrLogTest, LinesOfManyThreadsStayWhole) {
  constexpr int kThreads = 8;
  constexpr int kLines = 2000;
  // Long enough that a line written in pieces would be caught between them.
  const std::string padding(300, 'x');
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &padding] {
      for (int i = 0; i < kLines; ++i) Log("thread %d line %d %s", t, i, padding.c_str());
    });
  }
  for (std::thread& th : threads) th.join();
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  std::map<int, int> next_line;  // per thread: its lines arrive in order
  for (const std::string& line : lines) {
    int t = -1, i = -1;
    char rest[400] = "";
    ASSERT_EQ(std::sscanf(line.c_str(), "sbx-test-prog: thread %d line %d %399s", &t, &i, rest), 3)
        << line;
    EXPECT_EQ(rest, padding) << line;
    EXPECT_EQ(i, next_line[t]++) << line;
  }
}

TEST_F(StderrLogTest, LongLineIsCutNotSplit) {
  const std::string long_text(5000, 'y');
  Log("%s", long_text.c_str());
  Log("after");
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "sbx-test-prog: " + std::string(1022 - 15, 'y'));
  EXPECT_EQ(lines[1], "sbx-test-prog: after");
}

TEST_F(StderrLogTest, EachLineOfATextIsPrefixed) {
  LogEachLine("usage: prog [-a]\n  -a  all\n");
  LogEachLine("one line, no newline");
  EXPECT_EQ(Lines(),
            (std::vector<std::string>{"sbx-test-prog: usage: prog [-a]", "sbx-test-prog:   -a  all",
                                      "sbx-test-prog: one line, no newline"}));
}

}  // namespace
}  // namespace sbx
