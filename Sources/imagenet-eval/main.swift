import Eval

ImagenetEval.main()
