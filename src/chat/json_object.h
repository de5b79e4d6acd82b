#pragma once

#include <boost/json.hpp>
#include <string>
#include <string_view>

#include "chat/frames.h"

namespace chatd::chat {

/// A client's JSON object (a WebSocket frame or a REST body), parsed the one
/// way every parser of chatd starts: into a stack buffer first (frames are
/// small and short-lived), the heap only for large ones, and refused unless
/// it is valid JSON and an object. `what` names it in the error ("frame",
/// "body"). Lives on the parser's stack while the object is read.
class JsonObject {
 public:
  JsonObject(std::string_view payload, std::string_view what) {
    boost::json::error_code error;
    value_ = boost::json::parse(payload, error, &resource_);
    if (error) {
      error_ = {"invalid_json", std::string(what) + " is not valid JSON: " + error.message()};
    } else if ((object_ = value_.if_object()) == nullptr) {
      error_ = {"invalid_frame", std::string(what) + " must be a JSON object"};
    }
  }
  JsonObject(const JsonObject&) = delete;
  JsonObject& operator=(const JsonObject&) = delete;

  /// The object, or null when it was refused (then error() says why).
  const boost::json::object* get() const { return object_; }
  const FrameError& error() const { return error_; }

 private:
  unsigned char buffer_[4096];
  boost::json::monotonic_resource resource_{buffer_, sizeof buffer_};
  boost::json::value value_;
  const boost::json::object* object_ = nullptr;
  FrameError error_;
};

}  // namespace chatd::chat
