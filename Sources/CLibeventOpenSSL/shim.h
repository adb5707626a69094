// libc first, as in CLibevent: event2/event-config.h defines _GNU_SOURCE, which would otherwise
// give this module a different fd_set than the other C modules.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
// Declares SSL only as `struct ssl_st`: the functions on it come from CSSL.
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
