from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def fitpred(xtr, ytr, xte, c, balanced):
    sc = StandardScaler().fit(xtr)
    m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
    m.fit(sc.transform(xtr), ytr)
    return m.predict(sc.transform(xte))
