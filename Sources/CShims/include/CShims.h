#ifndef POINTS_EXPIRY_CSHIMS_H
#define POINTS_EXPIRY_CSHIMS_H
// The only C this project writes. Each function exists because Swift cannot call the library
// function directly: curl_easy_setopt, curl_multi_setopt and curl_easy_getinfo are variadic, and
// hiredis' libevent adapter is a set of `static` functions in a header, which Swift does not import.
#include <curl/curl.h>
#include <hiredis/async.h>
#include <event2/event.h>

// curl_easy_setopt with a `long` argument (CURLOPTTYPE_LONG options).
CURLcode pe_curl_easy_setopt_long(CURL *handle, CURLoption option, long value);
// curl_easy_setopt with a `char *` argument; curl copies strings (CURLOPTTYPE_STRINGPOINT).
CURLcode pe_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value);
// curl_easy_setopt with an object pointer (CURLOPT_HTTPHEADER, CURLOPT_PRIVATE, *DATA).
CURLcode pe_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value);
// CURLOPT_WRITEFUNCTION / CURLOPT_HEADERFUNCTION share this signature.
typedef size_t (*pe_curl_write_callback)(char *data, size_t size, size_t count, void *user);
CURLcode pe_curl_easy_setopt_write_function(CURL *handle, CURLoption option, pe_curl_write_callback fn);
CURLcode pe_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode pe_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value);
// curl_easy_getinfo with a `curl_socket_t *` argument (CURLINFO_ACTIVESOCKET).
CURLcode pe_curl_easy_getinfo_socket(CURL *handle, CURLINFO info, curl_socket_t *value);

CURLMcode pe_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value);
CURLMcode pe_curl_multi_setopt_pointer(CURLM *multi, CURLMoption option, void *value);
typedef int (*pe_curl_socket_callback)(CURL *easy, curl_socket_t fd, int what, void *user, void *socket_user);
CURLMcode pe_curl_multi_setopt_socket_function(CURLM *multi, pe_curl_socket_callback fn);
typedef int (*pe_curl_timer_callback)(CURLM *multi, long timeout_ms, void *user);
CURLMcode pe_curl_multi_setopt_timer_function(CURLM *multi, pe_curl_timer_callback fn);

// redisLibeventAttach from <hiredis/adapters/libevent.h>.
int pe_redis_libevent_attach(redisAsyncContext *context, struct event_base *base);

#endif
