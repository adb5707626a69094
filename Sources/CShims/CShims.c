#include "CShims.h"
#include <hiredis/adapters/libevent.h>

CURLcode pe_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
CURLcode pe_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
CURLcode pe_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
CURLcode pe_curl_easy_setopt_write_function(CURL *handle, CURLoption option, pe_curl_write_callback fn) {
    return curl_easy_setopt(handle, option, fn);
}
CURLcode pe_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
CURLcode pe_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}
CURLcode pe_curl_easy_getinfo_socket(CURL *handle, CURLINFO info, curl_socket_t *value) {
    return curl_easy_getinfo(handle, info, value);
}
CURLMcode pe_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}
CURLMcode pe_curl_multi_setopt_pointer(CURLM *multi, CURLMoption option, void *value) {
    return curl_multi_setopt(multi, option, value);
}
CURLMcode pe_curl_multi_setopt_socket_function(CURLM *multi, pe_curl_socket_callback fn) {
    return curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, fn);
}
CURLMcode pe_curl_multi_setopt_timer_function(CURLM *multi, pe_curl_timer_callback fn) {
    return curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, fn);
}
int pe_redis_libevent_attach(redisAsyncContext *context, struct event_base *base) {
    return redisLibeventAttach(context, base);
}
