// libc first: event2/event-config.h defines _GNU_SOURCE, which would otherwise give this module a
// different fd_set than every other C module and clash when Swift imports both.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

