#include "engine/sys/unix_peer.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/sys/unique_fd.h"

namespace sbx {

SysResult<ino_t> SocketInode(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return SysResult<ino_t>::FromErrno();
  if (!S_ISSOCK(st.st_mode)) return SysResult<ino_t>::Error(ENOTSOCK);
  return st.st_ino;
}

SysResult<ino_t> UnixPeerInode(int fd) {
  SysResult<ino_t> own = SocketInode(fd);
  if (!own.ok()) return own;
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return SysResult<ino_t>::FromErrno();
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } query{};
  query.header.nlmsg_len = sizeof query;
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST;
  query.request.sdiag_family = AF_UNIX;
  query.request.udiag_states = ~0u;
  query.request.udiag_ino = static_cast<uint32_t>(*own);
  query.request.udiag_show = UDIAG_SHOW_PEER;
  query.request.udiag_cookie[0] = query.request.udiag_cookie[1] = ~0u;  // no cookie
  if (::send(nl.get(), &query, sizeof query, 0) < 0) return SysResult<ino_t>::FromErrno();

  alignas(nlmsghdr) unsigned char buffer[1024];
  const ssize_t n = ::recv(nl.get(), buffer, sizeof buffer, 0);
  if (n < 0) return SysResult<ino_t>::FromErrno();
  auto* h = reinterpret_cast<nlmsghdr*>(buffer);
  if (!NLMSG_OK(h, static_cast<size_t>(n))) return SysResult<ino_t>::Error(EPROTO);
  if (h->nlmsg_type == NLMSG_ERROR) {
    const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    return SysResult<ino_t>::Error(e->error < 0 ? -e->error : EPROTO);
  }
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return SysResult<ino_t>::Error(EPROTO);
  const auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
  int left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *msg));
  for (auto* a = reinterpret_cast<const rtattr*>(msg + 1); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
      uint32_t peer;
      std::memcpy(&peer, RTA_DATA(a), sizeof peer);
      return static_cast<ino_t>(peer);
    }
  }
  return SysResult<ino_t>::Error(ENOTCONN);
}

}  // namespace sbx
