#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <string_view>

#include "net/rest_api.h"

namespace chatd::net {

/// The operators' API under /api/admin/ (docs/openapi.yaml), off unless
/// ADMIN_TOKEN is set (every path then answers 404): the webhook events kept
/// as failed, listed and sent again. The caller shows ADMIN_TOKEN as
/// `Authorization: Bearer`, compared in constant time and never logged; each
/// action is logged as an audit line.
class AdminApi {
 public:
  static bool handles(std::string_view target) { return target.starts_with("/api/admin/"); }

  static void handle(const Services& services, boost::asio::any_io_executor executor,
                     const RestApi::Request& request, RestApi::Done done,
                     RestApi::Stream stream = {});
};

/// Whether `authorization` is "Bearer <token>" with exactly `token`, in time
/// independent of where they differ (both are hashed first, so not even
/// their lengths show).
bool bearer_matches(std::string_view authorization, std::string_view token);

}  // namespace chatd::net
