#include "users/soap_envelope.h"

#include <gtest/gtest.h>

#include <string>

namespace chatd::users {
namespace {

/// The deployed service's answer for a known user (SPEC §1), as it indents it.
constexpr std::string_view kAliceEnvelope = R"(<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:web="http://www.example.org/webservice">
    <soapenv:Header/>
    <soapenv:Body>
        <web:getUserByUsernameResponse>
            <web:id>42</web:id>
            <web:username>alice</web:username>
        </web:getUserByUsernameResponse>
    </soapenv:Body>
</soapenv:Envelope>
)";

std::string envelope_with_username(std::string_view username_element) {
  return std::string(
             R"(<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" )"
             R"(xmlns:web="http://www.example.org/webservice" )"
             R"(xmlns:ns2="urn:other"><soapenv:Body><web:getUserByUsernameResponse>)") +
         std::string(username_element) +
         "</web:getUserByUsernameResponse></soapenv:Body></soapenv:Envelope>";
}

TEST(SoapEnvelopeTest, ParsesTheServiceEnvelopeWithIndentation) {
  EXPECT_EQ(parse_username(kAliceEnvelope), "alice");
}

TEST(SoapEnvelopeTest, IgnoresTheNamespacePrefix) {
  EXPECT_EQ(parse_username(envelope_with_username("<ns2:username>bob</ns2:username>")), "bob");
  EXPECT_EQ(parse_username(envelope_with_username("<username>carol</username>")), "carol");
  constexpr std::string_view kDefaultNamespace =
      R"(<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>)"
      R"(<getUserByUsernameResponse xmlns="http://www.example.org/webservice">)"
      R"(<username>dave</username></getUserByUsernameResponse></Body></Envelope>)";
  EXPECT_EQ(parse_username(kDefaultNamespace), "dave");
}

TEST(SoapEnvelopeTest, DecodesEntitiesAndCdataAndTrimsWhitespace) {
  EXPECT_EQ(parse_username(envelope_with_username("<web:username>a&amp;b</web:username>")), "a&b");
  EXPECT_EQ(parse_username(envelope_with_username("<web:username>Jos&#233;</web:username>")),
            "Jos\xC3\xA9");
  EXPECT_EQ(parse_username(envelope_with_username("<web:username><![CDATA[x<y]]></web:username>")),
            "x<y");
  EXPECT_EQ(parse_username(envelope_with_username("<web:username>\n  alice \t</web:username>")),
            "alice");
}

TEST(SoapEnvelopeTest, RejectsWhatIsNotAnEnvelopeNamingAUser) {
  EXPECT_EQ(parse_username(""), std::nullopt);
  EXPECT_EQ(parse_username("<soapenv:Envelope><soapenv:Body>"), std::nullopt);  // truncated
  EXPECT_EQ(parse_username("Usuario no encontrado"), std::nullopt);
  EXPECT_EQ(parse_username("<html><body><username>eve</username></body></html>"), std::nullopt);
  EXPECT_EQ(parse_username(envelope_with_username("<web:id>42</web:id>")), std::nullopt);
  // A username outside the Body (e.g. in a Header) does not count.
  EXPECT_EQ(parse_username("<s:Envelope xmlns:s=\"x\"><s:Header><username>eve</username>"
                           "</s:Header><s:Body/></s:Envelope>"),
            std::nullopt);
}

TEST(SoapEnvelopeTest, KnownUserIsFound) {
  EXPECT_EQ(classify_answer(200, kAliceEnvelope, "alice"), UserStatus::found);
}

TEST(SoapEnvelopeTest, ComparisonIsExact) {
  EXPECT_EQ(classify_answer(200, kAliceEnvelope, "Alice"), UserStatus::not_found);
  EXPECT_EQ(classify_answer(200, kAliceEnvelope, "alice "), UserStatus::not_found);
  EXPECT_EQ(classify_answer(200, kAliceEnvelope, "bob"), UserStatus::not_found);
}

TEST(SoapEnvelopeTest, NoRowsAnswerIsNotFound) {
  EXPECT_EQ(classify_answer(500, "Database query error: sql: no rows in result set", "zoe"),
            UserStatus::not_found);
  EXPECT_EQ(classify_answer(500, "Database query error: sql: no rows in result set\n", "zoe"),
            UserStatus::not_found);
}

TEST(SoapEnvelopeTest, LegacyNotFoundTextIsNotFound) {
  EXPECT_EQ(classify_answer(200, "Usuario no encontrado", "zoe"), UserStatus::not_found);
}

TEST(SoapEnvelopeTest, OtherServerErrorsAreUnavailable) {
  // The database being down must not turn into "this user does not exist".
  EXPECT_EQ(classify_answer(500, "Database query error: dial tcp: connection refused", "alice"),
            UserStatus::unavailable);
  EXPECT_EQ(classify_answer(500, "", "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(502, "Bad Gateway", "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(503, "no rows in result set", "alice"), UserStatus::unavailable);
}

TEST(SoapEnvelopeTest, ClientErrorsAreUnavailable) {
  EXPECT_EQ(classify_answer(400, "missing username", "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(404, "404 page not found", "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(404, kAliceEnvelope, "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(302, "", "alice"), UserStatus::unavailable);
}

TEST(SoapEnvelopeTest, MalformedOrEmptyAnswersAreUnavailable) {
  EXPECT_EQ(classify_answer(200, "", "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(200, "<soapenv:Envelope><soapenv:Body><web:username>alice", "alice"),
            UserStatus::unavailable);
  EXPECT_EQ(classify_answer(200, "<html>maintenance</html>", "alice"), UserStatus::unavailable);
}

TEST(SoapEnvelopeTest, SoapFaultIsUnavailable) {
  constexpr std::string_view kFault =
      R"(<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">)"
      R"(<soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode>)"
      R"(<faultstring>internal error</faultstring><detail><username>alice</username></detail>)"
      R"(</soapenv:Fault></soapenv:Body></soapenv:Envelope>)";
  EXPECT_EQ(classify_answer(200, kFault, "alice"), UserStatus::unavailable);
  EXPECT_EQ(classify_answer(500, kFault, "alice"), UserStatus::unavailable);
}

TEST(UserStatusTest, HasReadableNames) {
  EXPECT_EQ(to_string(UserStatus::found), "found");
  EXPECT_EQ(to_string(UserStatus::not_found), "not_found");
  EXPECT_EQ(to_string(UserStatus::unavailable), "unavailable");
}

}  // namespace
}  // namespace chatd::users
