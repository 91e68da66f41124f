"""A SOAP service for Junction's SOAP tests, built with spyne (an independent SOAP toolkit).

It serves one service, People, four ways on one port:
  /soap11   SOAP 1.1, document/literal wrapped (spyne's default), requests validated by lxml
            against the schema spyne publishes;
  /soap12   the same service over SOAP 1.2;
  /secure   SOAP 1.1 behind a WS-Security UsernameToken check (user `alice`, password
            `wonderland`, PasswordText or PasswordDigest); anything else gets a Client fault;
  /rpc      an rpc/literal service (spyne publishes document style only, so this one is
            written by hand below): Calc.Add(a, b) -> sum, with its own WSDL;
  /stats    plain text: how many requests each path answered (the tests count calls).
Each path answers `?wsdl` with its WSDL. The port (an argument, 0 for any) is printed as
`listening PORT` once the server accepts connections.
"""

import base64
import datetime
import hashlib
import io
import sys
import threading
from collections import Counter
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lxml import etree
from spyne import (
    Application,
    Array,
    Boolean,
    ComplexModel,
    Date,
    DateTime,
    Decimal,
    Double,
    Enum,
    Fault,
    Integer,
    Iterable,
    ServiceBase,
    Unicode,
    XmlAttribute,
    rpc,
)
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

NS = "urn:junction:test:people"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)

Status = Enum("active", "retired", "unknown", type_name="Status")


class Address(ComplexModel):
    __namespace__ = NS
    street = Unicode(min_occurs=1, nillable=False)
    city = Unicode
    zip = Unicode(pattern=r"[0-9]{5}")


class Person(ComplexModel):
    __namespace__ = NS
    id = XmlAttribute(Integer)
    name = Unicode(min_occurs=1, nillable=False, max_len=40)
    age = Integer(ge=0, le=150)
    born = Date
    seen = DateTime
    height = Double
    salary = Decimal
    active = Boolean
    status = Status
    address = Address
    nicknames = Array(Unicode)
    phones = Unicode(max_occurs="unbounded")


PEOPLE = {
    1: dict(
        id=1,
        name="Ada Lovelace",
        age=36,
        born=datetime.date(1815, 12, 10),
        seen=datetime.datetime(1852, 11, 27, 12, 0, 0, tzinfo=datetime.timezone.utc),
        height=1.65,
        salary="1234.50",
        active=False,
        status="retired",
        address=dict(street="12 St James's Square", city="London", zip="10001"),
        nicknames=["Enchantress of Numbers"],
        phones=["+44 20 0000 0001", "+44 20 0000 0002"],
    ),
    2: dict(id=2, name="Grace <Hopper> & Co", phones=["+1 555 0100"], nicknames=[]),
}

LOG = []


class People(ServiceBase):
    @rpc(Unicode(min_occurs=1, nillable=False), Integer, _returns=Iterable(Unicode))
    def SayHello(ctx, name, times):
        for i in range(times or 1):
            yield f"Hello, {name} ({i + 1})"

    @rpc(Integer(min_occurs=1, nillable=False), _returns=Person)
    def GetPerson(ctx, id):
        person = PEOPLE.get(id)
        if person is None:
            raise Fault("Client.NotFound", f"no person {id}", detail={"id": str(id)})
        fields = dict(person)
        address = fields.pop("address", None)
        result = Person(**fields)
        if address:
            result.address = Address(**address)
        return result

    @rpc(Person, _returns=Person)
    def EchoPerson(ctx, person):
        return person

    @rpc(Unicode, _returns=Unicode)
    def Explode(ctx, why):
        raise Fault("Server", f"exploded: {why}")

    @rpc(Unicode)
    def Log(ctx, line):
        LOG.append(line)

    @rpc(Unicode, _is_async=True)
    def Notify(ctx, line):
        """One-way: the WSDL declares no output."""
        LOG.append(f"notified: {line}")

    @rpc(_returns=Iterable(Unicode))
    def Logged(ctx):
        return list(LOG)


def app(protocol):
    return WsgiApplication(
        Application(
            [People],
            tns=NS,
            name="PeopleService",
            in_protocol=protocol(validator="lxml"),
            out_protocol=protocol(),
        )
    )


RPC_NS = "urn:junction:test:calc"
RPC_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="urn:junction:test:calc"
    targetNamespace="urn:junction:test:calc" name="Calc">
  <message name="AddRequest"><part name="a" type="xsd:int"/><part name="b" type="xsd:int"/></message>
  <message name="AddResponse"><part name="sum" type="xsd:int"/></message>
  <portType name="CalcPortType">
    <operation name="Add"><input message="tns:AddRequest"/><output message="tns:AddResponse"/></operation>
  </portType>
  <binding name="CalcBinding" type="tns:CalcPortType">
    <soap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Add">
      <soap:operation soapAction="urn:junction:test:calc#Add"/>
      <input><soap:body use="literal" namespace="urn:junction:test:calc"/></input>
      <output><soap:body use="literal" namespace="urn:junction:test:calc"/></output>
    </operation>
  </binding>
  <service name="Calc">
    <port name="CalcPort" binding="tns:CalcBinding"><soap:address location="http://127.0.0.1:%d/rpc"/></port>
  </service>
</definitions>
"""
ENV11 = "http://schemas.xmlsoap.org/soap/envelope/"


def rpc_add(environ, start_response):
    """Calc.Add over rpc/literal: the operation element in the binding's namespace, its parts
    as unqualified children."""
    if environ.get("REQUEST_METHOD") == "GET":
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [(RPC_WSDL % environ["SERVER_PORT_INT"]).encode()]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    action = environ.get("HTTP_SOAPACTION", "")
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        add = root.find(f"{{{ENV11}}}Body/{{{RPC_NS}}}Add")
        a, b = int(add.findtext("a")), int(add.findtext("b"))
        if action != '"urn:junction:test:calc#Add"':
            raise ValueError(f"SOAPAction {action!r}")
    except Exception as e:  # noqa: BLE001 - any malformed request is the client's fault
        start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
        return [fault(f"bad rpc request: {e}", "Client")]
    answer = (
        f'<e:Envelope xmlns:e="{ENV11}"><e:Body><c:AddResponse xmlns:c="{RPC_NS}">'
        f"<sum>{a + b}</sum></c:AddResponse></e:Body></e:Envelope>"
    )
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
    return [answer.encode()]


def fault(text, code="Client.Authentication"):
    body = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f"<soap:Fault><faultcode>soap:{code}</faultcode>"
        f"<faultstring>{text}</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    ).encode()
    return body


def check_token(body):
    """None when the envelope carries alice's UsernameToken, else why not."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        return f"not XML: {e}"
    token = root.find(f".//{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return "no wsse:UsernameToken"
    user = token.findtext(f"{{{WSSE}}}Username")
    password = token.find(f"{{{WSSE}}}Password")
    if user != "alice" or password is None:
        return "unknown user"
    if password.get("Type") == DIGEST:
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = token.findtext(f"{{{WSU}}}Created") or ""
        expected = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + b"wonderland").digest()
        ).decode()
        if password.text != expected:
            return "wrong digest"
        if len(nonce) != 16:
            return "nonce is not 16 bytes"
        return None
    return None if password.text == "wonderland" else "wrong password"


class Root:
    def __init__(self):
        self.port = 0
        self.apps = {"/soap11": app(Soap11), "/soap12": app(Soap12), "/secure": app(Soap11)}
        self.counts = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            with self.lock:
                text = "".join(f"{k} {v}\n" for k, v in sorted(self.counts.items()))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [text.encode()]
        if path == "/rpc":
            environ["SERVER_PORT_INT"] = self.port
            if environ.get("REQUEST_METHOD") == "POST":
                with self.lock:
                    self.counts[path] += 1
            return rpc_add(environ, start_response)
        target = self.apps.get(path)
        if target is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such service\n"]
        if environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self.counts[path] += 1
        if path == "/secure" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            why = check_token(body)
            if why is not None:
                start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
                return [fault(why)]
            environ["wsgi.input"] = io.BytesIO(body)
        return target(environ, start_response)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    root = Root()
    server = make_server("127.0.0.1", port, root, server_class=Threading, handler_class=Quiet)
    root.port = server.server_port
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
