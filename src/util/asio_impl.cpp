// Separate compilation of Asio and Beast (see CMakeLists.txt): their function
// bodies are compiled here once instead of in every file that includes them.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
