// Boost.JSON and Boost.URL compiled from source into the fuzz build, rather than linked from
// the system's libboost_json/libboost_url: instrumented this way, libFuzzer sees coverage
// inside their parsers and ASan checks their memory accesses.
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
