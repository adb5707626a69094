// Debian's libhttp-parser-dev (nodejs/http-parser 2.9) ships no pkg-config file: the header is
// found on the default include path and the module map links the library.
#include <http_parser.h>
